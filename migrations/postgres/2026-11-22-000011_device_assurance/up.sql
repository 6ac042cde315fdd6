-- What a device's key is, as the app declared at enrollment (RFC 8176: 'hwk' hardware-bound,
-- 'swk' software). Devices enrolled before this migration made no declaration: 'swk'.
ALTER TABLE devices ADD COLUMN key_protection TEXT NOT NULL DEFAULT 'swk';
-- The operator's code can require a hardware-bound key.
ALTER TABLE enrollment_codes ADD COLUMN require_hwk BOOLEAN NOT NULL DEFAULT false;
