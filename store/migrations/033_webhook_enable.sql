-- An endpoint enabled again has its waiting deliveries due at once.
--
-- A claim (store.ClaimDeliveries) moves the due deliveries of a disabled
-- endpoint an hour on, so that they do not fill the window of due ones it
-- looks at; and those waiting behind their journey's first one, behind it.
-- Whichever way an endpoint is enabled again (the API, or the start of an
-- instance for the endpoint from the config), its deliveries are due now.
CREATE FUNCTION callstate_webhook_endpoint_enabled() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE webhook_delivery SET next_at = now()
    WHERE endpoint_id = NEW.id AND status = 'pending' AND next_at > now();
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_endpoint_enabled
AFTER UPDATE OF enabled ON webhook_endpoint
FOR EACH ROW WHEN (NEW.enabled AND NOT OLD.enabled)
EXECUTE FUNCTION callstate_webhook_endpoint_enabled();
