-- Upgrade a working copy from runtime schema 1 to 2: the setup_runs table.
-- A fresh copy runs v1.sql and then this script too (workingcopy.schema_sql), so an upgraded
-- copy and a fresh one are made by the same statements.

CREATE TABLE setup_runs (            -- a step's setup scripts in this working copy (contract 3.1)
  step_id       TEXT PRIMARY KEY REFERENCES steps(id),
  state         TEXT CHECK (state IN ('running', 'done', 'failed')),  -- the background script; NULL: not run
  exit_code     INTEGER,
  timed_out     INTEGER NOT NULL DEFAULT 0,
  message       TEXT,                -- what happened, in a sentence (failed runs)
  output        TEXT NOT NULL DEFAULT '',  -- the tail of its output, as the status shows it
  runs          INTEGER NOT NULL DEFAULT 0,
  started_at    TEXT,
  finished_at   TEXT,
  foreground_at TEXT                 -- when the page took the foreground script to type it
);

UPDATE backend_meta SET value = '2' WHERE key = 'schema_version';
