-- Phonebook groups (VIP, suppliers): routing rules can match a caller's
-- group. Adding a contact again adds the groups it lacks, as with numbers.

ALTER TABLE contact ADD COLUMN groups text[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(groups) <= 20);

COMMENT ON COLUMN contact.groups IS 'Groups the contact belongs to (VIP, suppliers), as written; routing rules match them regardless of case.';
