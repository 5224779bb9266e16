package config

// Account is one mail account: the IMAP mailboxes to watch and, for reply actions, its SMTP server.
// Its sections have files of their own: imap.go, smtp.go, limits.go (with oauth2.go and server.go
// shared by imap and smtp).
type Account struct {
	Name   string     `mapstructure:"name"`
	IMAP   IMAPConfig `mapstructure:"imap"`
	SMTP   SMTPConfig `mapstructure:"smtp"`
	Limits Limits     `mapstructure:"limits"`
}

func (a *Account) applyDefaults(path string, warnings *[]string) {
	a.IMAP.applyDefaults(path+".imap", warnings)
	a.SMTP.applyDefaults(path+".smtp", warnings)
	a.Limits.applyDefaults(path+".limits", a.IMAP.Host, len(a.IMAP.Mailboxes), warnings)
}

func (a *Account) validate(p *problems, path string) {
	a.IMAP.validate(p, path+".imap")
	a.SMTP.validate(p, path+".smtp")
	a.Limits.validate(p, path+".limits", len(a.IMAP.Mailboxes))
}

// watches reports whether the account watches mailbox.
func (a *Account) watches(mailbox string) bool {
	for _, m := range a.IMAP.Mailboxes {
		if SameMailbox(m, mailbox) {
			return true
		}
	}
	return false
}
