-- The distribution, format 1 (PRAGMA user_version = 1): what the build
-- pipeline writes and the backend only ever reads (contract section 3).
-- This file is the one copy in the project: the demo builder, the tests'
-- builders and docs/format.md all use it.

CREATE TABLE workshop (          -- exactly one row
  id          TEXT NOT NULL,
  title       TEXT NOT NULL,
  version     TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  navigation  TEXT NOT NULL DEFAULT 'linear'   -- 'linear' | 'free'
);
CREATE TABLE steps (
  id        TEXT PRIMARY KEY,              -- slug: [a-z0-9][a-z0-9-]*
  position  INTEGER NOT NULL UNIQUE,       -- order, 0..n-1
  title     TEXT NOT NULL,
  markdown  TEXT NOT NULL,
  image_tag TEXT NOT NULL                  -- the image this step runs in
);
CREATE TABLE step_metadata (
  step_id    TEXT PRIMARY KEY REFERENCES steps(id),
  validation TEXT NOT NULL DEFAULT '{}',   -- JSON, section 6
  hints      TEXT NOT NULL DEFAULT '[]'    -- JSON array of markdown strings
);
