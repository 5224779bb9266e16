// Package spool owns the attachment spool: the content of attachments that webhooks ship inline
// (`attachments: inline`), kept on disk so that a job's body in the outbox holds only a reference
// to it and no attachment is ever held whole in memory or fetched from IMAP twice. No other
// package builds a path inside it.
//
// Layout, under the state directory:
//
//	spool/incoming/daemon/<message>/<sect>  what the daemon's watchers fetched for a message not yet
//	                                        committed (Incoming, Message); emptied by Open
//	spool/incoming/tool-…/<message>/<sect>  the same for a tool beside the daemon (Options.Shared)
//	spool/jobs/<job id>/<sect>              the files of one job: the decoded content of IMAP
//	                                        section <sect>
//
// A watcher streams a message's chosen parts into a Message and fsyncs them; the pipeline links
// them into the directories of the message's jobs (Attach) before the jobs commit, and the watcher
// removes the Message after the commit. The sender reads a job's files on every attempt
// (OpenFile) and never changes them; they are removed when the job is done (Done, then Run
// checks the outbox) or gone from the outbox (an operator dropped it), and kept while it is dead,
// so `outbox retry` works. A crash between spooling and commit leaves directories no job refers
// to: Sweep removes them once they are older than Options.Grace, and the daemon's Open empties
// its incoming directory. Every file and directory entry is fsynced before a job may refer to it.
//
// On a store shared by replicas (Options.Blobs) a job's files are the store's blobs JOBID/SECTION
// instead of jobs/<job id>/: Attach streams the incoming files into them, OpenFile reads them a
// chunk at a time, and the sweep deletes the blobs of done jobs and of jobs that never committed.
// The incoming directory stays local: it is this replica's scratch.
package spool
