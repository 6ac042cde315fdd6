ALTER TABLE enrollment_codes DROP COLUMN require_hwk;
ALTER TABLE devices DROP COLUMN key_protection;
