package watcher

// SetFirstPassKeep sets how many bytes of headers a first pass keeps before it cuts its batch
// (batchHeaderBudget otherwise), so tests can cut batches without 16 MiB of headers.
func SetFirstPassKeep(c *Config, n int64) { c.firstPassKeep = n }
