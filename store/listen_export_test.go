package store

import "context"

// ExecForTest runs sql on the pool and returns the rows it affected.
func (s *Store) ExecForTest(ctx context.Context, sql string) (int64, error) {
	tag, err := s.pool.Exec(ctx, sql)
	return tag.RowsAffected(), err
}

// MoveEvery is moveEvery: how often a claim moves deliveries behind
// their first one when the last time found few.
const MoveEvery = moveEvery
