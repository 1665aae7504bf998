-- A journey concludes without an answer only once it has been quiet for a
-- grace (journey_grace_seconds, default 1 s).
--
-- sipgate sends a call's answer and hang-up moments apart, and they may be
-- taken by two instances and commit in either order. The call row is the
-- same whatever the order, but a journey computed between the two commits
-- from a hang-up with no answer yet was missed, and the feed told
-- call.missed and journey.ended for it. The refresher (store/refresher.go)
-- now holds such a journey: when all its legs have ended and none was
-- answered, and one of the calls it takes was written less than the grace
-- ago, it leaves the journey as it is and queues its legs again, due when
-- the grace has passed since that write (held: not held again); five
-- graces when a sipgate leg hung up normalClearing (talked on) with no
-- answer yet, whose answer is known to be on its way. A journey
-- that ends answered is not held: an answer is never taken back.
ALTER TABLE journey_pending ADD COLUMN held boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN journey_pending.at IS 'When the row was written (by a batch of events), or, held, when it is due.';
COMMENT ON COLUMN journey_pending.held IS 'Queued again because its journey would have ended unanswered within the grace of a write.';

INSERT INTO callstate_setting (name, value) VALUES ('journey_grace_seconds', '1')
ON CONFLICT (name) DO NOTHING;
