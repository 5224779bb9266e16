// Package failpoint lets crash tests kill the process at a named point. Built without the
// `failpoints` tag, Hit is an empty function the compiler removes; with it, Hit kills the process
// (SIGKILL, no deferred code, no flush) when MAILHOOK_FAILPOINT names the point. Points in use:
// after_fetch (watcher: message fetched, nothing committed), after_commit (watcher: jobs and
// checkpoint committed), after_send (dispatch: webhook answered 2xx, job not yet marked done).
package failpoint
