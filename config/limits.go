package config

// The limits section of an account: the download budget and what else one account may cost.

import (
	"fmt"

	"github.com/mailhook/mailhook/watcher"
)

// Limits bound what one account may cost.
type Limits struct {
	DownloadPerDay ByteSize `mapstructure:"download_per_day"` // rolling 24 h; default 2000MB (Gmail allows 2500MB)
	MaxMessageSize ByteSize `mapstructure:"max_message_size"` // larger messages are never fetched in full; default 25MB
	MaxConnections int      `mapstructure:"max_connections"`  // IMAP connections; default 4
	RepliesPerDay  int      `mapstructure:"replies_per_day"`  // rolling 24 h; default 400
}

// Defaults of the limits section. The message size cap is the watcher's own.
const (
	defaultDownloadPerDay = 2000 * MB
	defaultMaxMessageSize = ByteSize(watcher.DefaultMaxMessageSize)
	defaultMaxConnections = 4
	defaultRepliesPerDay  = 400
	gmailMaxConnections   = 15 // Gmail allows about 15 IMAP connections per account, all clients together
)

// applyDefaults fills the limits of an account watching mailboxes on host.
func (l *Limits) applyDefaults(path, host string, mailboxes int, warnings *[]string) {
	if l.DownloadPerDay == 0 {
		l.DownloadPerDay = defaultDownloadPerDay
	}
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = defaultMaxMessageSize
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = max(defaultMaxConnections, mailboxes)
	}
	if l.RepliesPerDay == 0 {
		l.RepliesPerDay = defaultRepliesPerDay
	}
	if isGmail(host) && l.MaxConnections > gmailMaxConnections {
		*warnings = append(*warnings, fmt.Sprintf("%s.max_connections: %d is more than the ~%d IMAP connections Gmail allows per account, shared by every client",
			path, l.MaxConnections, gmailMaxConnections))
	}
}

// validate checks the limits of an account watching mailboxes.
func (l Limits) validate(p *problems, path string, mailboxes int) {
	if l.MaxMessageSize <= 0 {
		p.add(path+".max_message_size", "must be positive")
	}
	if l.DownloadPerDay <= 0 {
		p.add(path+".download_per_day", "must be positive")
	} else if l.MaxMessageSize > l.DownloadPerDay/4 {
		p.add(path+".download_per_day", "%s must be at least 4 × max_message_size (%s)", l.DownloadPerDay, l.MaxMessageSize)
	}
	if l.MaxConnections < mailboxes || l.MaxConnections < 1 {
		p.add(path+".max_connections", "%d is fewer than the %d watched mailboxes (one connection each)", l.MaxConnections, mailboxes)
	}
	if l.RepliesPerDay < 1 {
		p.add(path+".replies_per_day", "must be at least 1")
	}
}
