// Shapes of the backend's JSON (contract section 4 and 6).

export type StepStatus = "locked" | "available" | "current" | "completed";
export type Phase = "starting" | "ready" | "transitioning" | "completed";

export interface StepSummary {
  id: string;
  position: number;
  title: string;
  status: StepStatus;
}

export interface Workshop {
  id: string;
  title: string;
  version: string;
  description: string;
  navigation: "linear" | "free";
  steps: StepSummary[];
}

export interface StepDetail {
  id: string;
  position: number;
  title: string;
  markdown: string;
  html: string;
  hints: number;
  validation: { gate: boolean; rules: number; watch: number | null };
  previous: string | null;
  next: string | null;
}

export interface Status {
  workshop: string;
  current_step: string;
  container_step: string;
  target_step: string | null;
  phase: Phase;
  step_index: number;
  step_count: number;
  completed_steps: string[];
  terminal: { state: string; restarts: number };
  started_at: string;
  /** What is wrong with the workspace now ("disk_full"). */
  problems?: string[];
}

export interface RuleResult {
  id: string;
  type: string;
  passed: boolean;
  message: string | null;
  detail: string | null;
}

export interface ValidationResult {
  step: string;
  passed: boolean;
  checked_at: string;
  duration_ms: number;
  results: RuleResult[];
}

export interface Hint {
  index: number;
  html: string;
}

export interface ProgressEntry {
  step: string;
  status: string;
  hints_revealed: number;
}
