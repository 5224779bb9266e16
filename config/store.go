package config

import "time"

// The store section: which backend holds the state. SQLite (the default) lives in state_dir and
// serves one process; PostgreSQL is shared by several replicas.

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Lease TTL of the PostgreSQL store: its default and bounds.
const (
	DefaultLeaseTTL = 15 * time.Second
	MinLeaseTTL     = 5 * time.Second
	MaxLeaseTTL     = 5 * time.Minute
)

// StoreConfig selects the state store: SQLite in state_dir (the default, one process), or
// PostgreSQL shared by several replicas.
type StoreConfig struct {
	Driver string `mapstructure:"driver"` // sqlite (default) | postgres
	// DSN is the PostgreSQL connection string or URL (postgres only; or DSNFile). It holds a
	// password more often than not: it never reaches a log line or an error.
	DSN     string `mapstructure:"dsn"`
	DSNFile string `mapstructure:"dsn_file"` // read into DSN by LoadConfig
	// LeaseTTL is how long a replica's mailbox lease lasts without renewal (postgres only).
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
}

// applyStoreDefaults fills the store section's defaults.
func (c *Config) applyStoreDefaults() {
	if c.Store.Driver == "" {
		c.Store.Driver = DriverSQLite
	}
	if c.Store.Driver == DriverPostgres && c.Store.LeaseTTL == 0 {
		c.Store.LeaseTTL = DefaultLeaseTTL
	}
}

// readStoreFiles reads store.dsn_file.
func (c *Config) readStoreFiles(p *problems) {
	readSecretFile(p, "store", "dsn", &c.Store.DSN, c.Store.DSNFile, false) // operator verbs need the dsn too
}

// validateStore checks the store section.
func (c *Config) validateStore(p *problems) {
	s := c.Store
	if !oneOf(p, "store.driver", s.Driver, DriverSQLite, DriverPostgres) {
		return
	}
	if s.Driver == DriverSQLite {
		if s.DSN != "" || s.DSNFile != "" {
			p.add("store.dsn", "only for driver: postgres")
		}
		if s.LeaseTTL != 0 {
			p.add("store.lease_ttl", "only for driver: postgres")
		}
		return
	}
	if s.DSN == "" {
		p.add("store.dsn", "required with driver: postgres (or dsn_file)")
	}
	if s.LeaseTTL < MinLeaseTTL || s.LeaseTTL > MaxLeaseTTL {
		p.add("store.lease_ttl", "%v is outside %v–%v", s.LeaseTTL, MinLeaseTTL, MaxLeaseTTL)
	}
}
