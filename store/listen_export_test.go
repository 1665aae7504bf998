package store

import "context"

// ExecForTest runs sql on the pool and returns the rows it affected.
func (s *Store) ExecForTest(ctx context.Context, sql string) (int64, error) {
	tag, err := s.pool.Exec(ctx, sql)
	return tag.RowsAffected(), err
}
