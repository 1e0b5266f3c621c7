-- workshop-backend runtime tables, schema version 2 (version 1 and the setup_runs table;
-- upgrade-v2.sql brings a version 1 copy here).
-- Added to the working copy (never to the distribution) next to the
-- distribution's own tables.  Times are RFC 3339 UTC strings.

CREATE TABLE backend_meta (          -- schema_version, distribution_sha256, created_at
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE runtime_state (         -- exactly one row
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  current_step TEXT NOT NULL REFERENCES steps(id),
  target_step  TEXT REFERENCES steps(id),
  phase        TEXT NOT NULL CHECK (phase IN ('ready', 'transitioning', 'completed')),
  started_at   TEXT NOT NULL,
  updated_at   TEXT NOT NULL,
  completed_at TEXT                  -- when the workshop was completed
);

CREATE TABLE custom_state (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,          -- JSON
  updated_at TEXT NOT NULL
);

CREATE TABLE progress (
  step_id      TEXT PRIMARY KEY REFERENCES steps(id),
  viewed_at    TEXT,
  completed_at TEXT,
  attempts     INTEGER NOT NULL DEFAULT 0   -- checks asked for (Check, gated Next); watch runs do not count
);

CREATE TABLE hint_reveals (
  step_id     TEXT NOT NULL REFERENCES steps(id),
  hint_index  INTEGER NOT NULL,
  revealed_at TEXT NOT NULL,
  PRIMARY KEY (step_id, hint_index)
);

CREATE TABLE validation_results (    -- the last result per step
  step_id    TEXT PRIMARY KEY REFERENCES steps(id),
  passed     INTEGER NOT NULL,
  checked_at TEXT NOT NULL,
  result     TEXT NOT NULL           -- JSON, as GET /api/v1/steps/{id}/validation answers it
);

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
