-- The index of a journey's deliveries covers them all, not only the
-- waiting ones.
--
-- The planner sizes a partial index by the rows it held at the last
-- VACUUM. With webhook_delivery_order_idx partial (status = 'pending') and
-- vacuumed while few deliveries waited, it took reading the whole index
-- for the cheapest way to find one delivery by id, and a claim joined its
-- window to it that way: a second and more a claim with 10,000 waiting.
-- Whole, the index is sized by the table, so a delivery is found by its
-- id; the look-up of a journey's first waiting delivery reads its few
-- deliveries (status is in the index).
DROP INDEX webhook_delivery_order_idx;
CREATE INDEX webhook_delivery_order_idx ON webhook_delivery (endpoint_id, order_key, id) INCLUDE (status);
