// The draggable divider between instructions and terminal: pointer drag,
// arrow keys (Shift for bigger steps), Home/End, double-click to reset.
// Side by side it moves left and right; stacked (narrow screens: the
// instructions above, the terminal below, the page itself never scrolls) it
// moves up and down. Each layout keeps its own split, a percentage of the
// instructions' share, in localStorage.

const MIN = 20;
const MAX = 80;

interface Mode {
  key: string;
  property: string;
  initial: number;
  orientation: "vertical" | "horizontal";
}

const SIDE_BY_SIDE: Mode = { key: "workshop.split", property: "--split", initial: 45, orientation: "vertical" };
const STACKED: Mode = { key: "workshop.split.stacked", property: "--split-stacked", initial: 58, orientation: "horizontal" };

export function setupSplit(layout: HTMLElement, divider: HTMLElement, stacked: MediaQueryList, onChange: () => void): void {
  const mode = (): Mode => (stacked.matches ? STACKED : SIDE_BY_SIDE);
  const load = (m: Mode): number => {
    let v = Number(localStorage.getItem(m.key) ?? m.initial);
    if (!Number.isFinite(v)) v = m.initial;
    return v;
  };
  let value = load(mode());

  const apply = (v: number, save = true): void => {
    const m = mode();
    value = Math.round(Math.min(MAX, Math.max(MIN, v)));
    layout.style.setProperty(m.property, `${value}%`);
    divider.setAttribute("aria-orientation", m.orientation);
    divider.setAttribute("aria-valuenow", String(value));
    divider.setAttribute("aria-valuetext", `Instructions ${value}%, terminal ${100 - value}%`);
    if (save) {
      try {
        localStorage.setItem(m.key, String(value));
      } catch {
        // Private mode: the split just isn't remembered.
      }
    }
    onChange();
  };
  apply(value, false);
  stacked.addEventListener("change", () => apply(load(mode()), false));

  divider.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    divider.setPointerCapture(ev.pointerId);
    divider.classList.add("dragging");
    document.body.classList.add("resizing");
    const rect = layout.getBoundingClientRect();
    const move = (e: PointerEvent): void =>
      apply(stacked.matches ? ((e.clientY - rect.top) / rect.height) * 100 : ((e.clientX - rect.left) / rect.width) * 100);
    const up = (): void => {
      divider.classList.remove("dragging");
      document.body.classList.remove("resizing");
      divider.removeEventListener("pointermove", move);
      divider.removeEventListener("pointerup", up);
      divider.removeEventListener("pointercancel", up);
    };
    divider.addEventListener("pointermove", move);
    divider.addEventListener("pointerup", up);
    divider.addEventListener("pointercancel", up);
  });
  divider.addEventListener("keydown", (ev) => {
    const step = ev.shiftKey ? 10 : 2;
    const moves: Record<string, number> = {
      ArrowLeft: value - step,
      ArrowUp: value - step,
      ArrowRight: value + step,
      ArrowDown: value + step,
      Home: MIN,
      End: MAX,
    };
    if (ev.key in moves) {
      apply(moves[ev.key]);
      ev.preventDefault();
    }
  });
  divider.addEventListener("dblclick", () => apply(mode().initial));
}
