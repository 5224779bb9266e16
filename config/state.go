package config

// The state section: state_dir, where the daemon keeps its database and attachment spool (the
// store: section choosing another backend is store.go).

// defaultStateDir is state_dir when the file does not set it: relative to the working directory.
const defaultStateDir = "./mailhook-state"

func (c *Config) applyStateDefaults() {
	if c.StateDir == "" {
		c.StateDir = defaultStateDir
	}
}

func (c *Config) validateState(p *problems) {
	if c.StateDir == "" {
		p.add("state_dir", "required")
	}
}
