-- A SIP dialog that vanished (a full dialog-info document no longer lists
-- it, so its end never reached callstate: NOTIFYs lost, a subscription
-- made again, callstate down) is a failure, as a dialog ended by a PBX
-- restart is: whether it was answered is not known. A leg seen answered
-- stays answered; one seen only ringing made its journey "missed", and
-- a missed call in the feed, the chat and the day's stats, for calls that
-- were answered out of sight. Now such a journey is "failed". Journeys
-- that ended before keep the outcome they were given.
CREATE OR REPLACE VIEW call_leg AS
 SELECT c.id,
    c.source,
    c.call_key,
    c.call_id,
    c.orig_call_id,
    c.extension,
    c.direction,
    c.from_party,
    c.to_party,
    c.users,
    c.user_ids,
    c.full_user_ids,
    c.answered_by,
    c.answering_number,
    c.diversion,
    c.xcid,
    c.state,
    c.on_hold,
    c.hangup_cause,
    c.dtmf,
    c.started_at,
    c.answered_at,
    c.ended_at,
    c.updated_at,
    c.last_event_id,
    c.change_seq,
    c.extension_pinned,
    c.hold_at,
    c.cause_at,
    c.dtmf_presses,
    c.journey_id,
    v.voicemail,
    ((c.answered_at IS NOT NULL) AND (NOT v.voicemail) AND ((c.source = 'sip'::text) OR (c.direction = 'out'::text) OR (c.answered_by <> ''::text) OR (c.answering_number <> ''::text))) AS person,
        CASE
            WHEN (c.answered_by <> ''::text) THEN c.answered_by
            WHEN (c.answering_number <> ''::text) THEN c.answering_number
            ELSE c.extension
        END AS leg_answered_by,
        CASE
            WHEN (c.hangup_cause = ''::text) THEN false
            WHEN (c.source = 'sipgate'::text) THEN (c.hangup_cause = ANY (ARRAY['congestion'::text, 'timeout'::text]))
            ELSE (c.hangup_cause = ANY (ARRAY['error'::text, 'pbx-restart'::text, 'vanished'::text]))
        END AS failure
   FROM (call_state c
     CROSS JOIN LATERAL ( SELECT ((c.source = 'sipgate'::text) AND (c.users = '{voicemail}'::text[])) AS voicemail) v);

COMMENT ON VIEW call_leg IS 'call_state with what the journey rules read: voicemail leg, answered by a person, who, failure cause.';
