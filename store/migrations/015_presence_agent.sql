-- The presence agent: phones and web phones SUBSCRIBE to callstate for
-- lamps. presence_account holds the digest accounts they authenticate
-- with (besides SIP_AGENT_ACCOUNTS); presence_alias gives lamps further
-- names, such as a sipgate user's phone number.

CREATE TABLE presence_account (
    username   text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9._~*#+!$&''()=,;?/-]{1,64}$'),
    realm      text NOT NULL,
    -- hex MD5 of 'username:realm:password' (RFC 2617 HA1): no password is kept
    ha1        text NOT NULL CHECK (ha1 ~ '^[0-9a-f]{32}$'),
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE presence_account IS 'Digest accounts of presence-agent subscribers; ha1 = md5(username:realm:password).';

CREATE TABLE presence_alias (
    alias      text PRIMARY KEY CHECK (alias <> '' AND length(alias) <= 64),
    source     text NOT NULL CHECK (source IN ('sip', 'sipgate')),
    extension  text NOT NULL CHECK (extension <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE presence_alias IS 'Further names of lamps for presence-agent subscribers: a number or short name to a PBX extension (source sip) or sipgate user id (source sipgate).';
