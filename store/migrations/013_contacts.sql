-- The phonebook: names for the numbers calls come from and go to. Numbers
-- are kept as sipgate sends them (E.164 digits without "+", or a short
-- internal number); the board and the API format them for reading.

CREATE TABLE contact (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 200),
    numbers    text[]      NOT NULL CHECK (cardinality(numbers) BETWEEN 1 AND 20),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE contact IS 'Phonebook: one row per person or company, with every number that is theirs.';
COMMENT ON COLUMN contact.numbers IS 'E.164 digits without +, as sipgate sends them (4916012345678), or an internal number.';

CREATE INDEX contact_numbers_idx ON contact USING gin (numbers);

-- One name per number: should two contacts share a number, the first added wins.
CREATE VIEW contact_number AS
SELECT DISTINCT ON (n.number) n.number, c.id AS contact_id, c.name
FROM contact c, unnest(c.numbers) AS n(number)
ORDER BY n.number, c.id;

COMMENT ON VIEW contact_number IS 'Name for each phonebook number, for joining call_state.from_party or to_party.';
