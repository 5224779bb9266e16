package sqlite

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// exportable are the tables CopyRows reads: the whole state except schema bookkeeping.
var exportable = map[string]bool{
	"checkpoints": true, "seen_keys": true, "fetch_records": true, "fetch_strikes": true,
	"jobs": true, "job_deps": true, "attempts": true,
	"reply_ledger": true, "reply_sends": true, "reply_pauses": true,
	"budget_buckets": true, "budget_state": true, "budget_holds": true, "endpoints": true,
	"installation": true,
}

var columnName = regexp.MustCompile(`^[a-z_]+$`)

// CopyRows calls row with the values of every row of table, in the given columns, each an int64,
// a string, a []byte or nil: the raw state, for moving an install to another backend (mailhook
// store copy). It reads; it changes nothing. Unknown tables or malformed column names are refused.
func (s *Store) CopyRows(ctx context.Context, table string, columns []string, row func(values []any) error) error {
	if !exportable[table] {
		return fmt.Errorf("export %s: not a table of the state", table)
	}
	for _, c := range columns {
		if !columnName.MatchString(c) {
			return fmt.Errorf("export %s: bad column name %q", table, c)
		}
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+strings.Join(columns, ", ")+" FROM "+table)
	if err != nil {
		return fmt.Errorf("export %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([]any, len(columns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("export %s: %w", table, err)
		}
		if err := row(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export %s: %w", table, err)
	}
	return nil
}
