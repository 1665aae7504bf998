-- Claiming deliveries stays a walk of the due ones in order, with one
-- look-up each, whatever the planner's statistics say.
--
-- The claim (store.ClaimDeliveries) takes the due deliveries in (next_at,
-- id) order that are their call's first waiting one. With statistics from
-- a moment when few deliveries waited, the planner answered "is it the
-- first?" by reading the whole due index, sorted, for every due row: a
-- claim with 15,000 waiting took 104 s, and a backlog never drained.
--
-- The due index now holds (next_at, id), so a claim stops after the rows it
-- needs, and its predicate names attempts >= 0 (always true) besides
-- status: the first-waiting look-up, which does not name attempts, cannot
-- use it and takes webhook_delivery_order_idx, where it is one probe.
DROP INDEX webhook_delivery_due_idx;
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (next_at, id) WHERE status = 'pending' AND attempts >= 0;
