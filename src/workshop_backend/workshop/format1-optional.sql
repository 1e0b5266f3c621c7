-- The optional parts of format 1 (contract section 3.1, added 2026-11-30).
-- A distribution may have them or not (still PRAGMA user_version = 1); run
-- this after format1.sql to add both. The backend accepts either.

CREATE TABLE assets (            -- files the steps show or offer
  path       TEXT PRIMARY KEY,   -- relative, '/'-separated: 'images/arch.png'
  media_type TEXT NOT NULL,      -- 'image/png', 'image/svg+xml', 'text/plain', ...
  data       BLOB NOT NULL
);

-- JSON: {"background": script, "foreground": script, "timeout": seconds}
ALTER TABLE step_metadata ADD COLUMN setup TEXT NOT NULL DEFAULT '{}';
