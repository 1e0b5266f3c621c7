// Where the keyboard focus goes: every rule of the page in one place.
//
// A student's next key belongs somewhere definite, and a button that keeps
// the focus after a click steals it: the Space or Enter meant for the shell
// presses the button again (Run ran its block seven times; "+" opened three
// more terminals; after Run `man ls`, q did nothing). So:
//
//   - after Run or Copy (block buttons and inline chips), and after a new,
//     switched or closed terminal tab: the active terminal;
//   - after a hint is revealed: the hint (a screen reader reads it);
//   - after the student changes the step (Previous, Next, the step list):
//     the new step's title, where reading starts (app.ts scrolls the
//     instructions back to it: on a phone the new step opened at its bottom);
//   - any other button, summary or divider used with the mouse gives the
//     focus back to the terminal if the terminal had it, and else lets go of
//     it: a mouse click never leaves a control focused for the next key.
//
// Keyboard users keep the focus on what they pressed unless a rule above
// moves it (Tab goes on from there), and always see it: :focus-visible in
// app.css draws the ring.

/** What the rules move the focus to. */
export interface FocusTargets {
  /** The terminal area: the tab bar and the terminals. */
  readonly terminalPane: HTMLElement;
  /** Focus the active terminal's input (false: there is none). */
  focusTerminal(): boolean;
  /** Where a step change puts the focus. */
  readonly stepTitle: HTMLElement;
}

/** A control that a mouse click would otherwise leave focused. */
const CONTROLS = "button, summary, [role='tab'], [role='separator'], a[href]";

/** A touch screen without a mouse: focusing the terminal would pop up the on-screen keyboard. */
const touchOnly = window.matchMedia("(hover: none) and (pointer: coarse)");

export class FocusRules {
  private terminalHadFocus = false;

  constructor(private readonly targets: FocusTargets) {}

  /** Watch mouse and touch clicks (call once). */
  install(): void {
    // Capture phase, before the browser moves the focus to what was pressed.
    document.addEventListener(
      "pointerdown",
      () => {
        this.terminalHadFocus = this.inTerminal(document.activeElement);
      },
      true,
    );
    // Bubbling phase: after the control's own click handler, which may have
    // moved the focus on purpose (Run to the terminal...).
    document.addEventListener("click", (ev) => this.afterClick(ev));
  }

  /** Run typed something into the terminal: the next keys are for the shell too. */
  afterRun(): void {
    this.toTerminal();
  }

  /** Copied: the next key is most likely the paste into the terminal. */
  afterCopy(): void {
    this.toTerminal();
  }

  /** The student chose a terminal: opened, switched to or closed a tab, or took the skip link. */
  terminalChosen(): void {
    // The student asked for this terminal: on a phone too, the keyboard may come up.
    this.targets.focusTerminal();
  }

  /**
   * A hint appeared: move to it, so it is read and the next Tab goes on from
   * it; ``then`` (the button for the next hint) is scrolled into view too
   * where there is room.
   */
  hintRevealed(hint: HTMLElement, then: HTMLElement | null): void {
    hint.tabIndex = -1;
    hint.focus({ preventScroll: true });
    revealWithin(hint, then);
  }

  /**
   * A new step is on screen, shown from its title. The focus moves there
   * only when the student asked for the change, never from under someone
   * typing (another device moved the step).
   */
  stepChanged(byStudent: boolean): void {
    if (!byStudent) return;
    const { stepTitle } = this.targets;
    stepTitle.tabIndex = -1;
    stepTitle.focus({ preventScroll: true });
  }

  private toTerminal(): void {
    if (touchOnly.matches) {
      // Keep the on-screen keyboard down (the student wants to see the
      // output), but take the focus off the button all the same.
      this.targets.terminalPane.focus({ preventScroll: true });
      return;
    }
    if (!this.targets.focusTerminal()) (document.activeElement as HTMLElement | null)?.blur();
  }

  private inTerminal(node: Element | null): boolean {
    return node !== null && this.targets.terminalPane.contains(node) && node.classList.contains("xterm-helper-textarea");
  }

  private afterClick(ev: MouseEvent): void {
    // detail is the click count: 0 for a click made with the keyboard
    // (Enter or Space on a focused control), which keeps its focus.
    if (ev.detail === 0 || !(ev.target instanceof Element)) return;
    const control = ev.target.closest<HTMLElement>(CONTROLS);
    if (!control || document.activeElement !== control) return;
    if (this.terminalHadFocus && this.targets.focusTerminal()) return;
    control.blur();
  }
}

/** Scroll ``node`` into view, and ``then`` (what comes after it) too if both fit; ``node`` wins. */
export function revealWithin(node: HTMLElement, then: HTMLElement | null): void {
  then?.scrollIntoView({ block: "nearest" });
  node.scrollIntoView({ block: "nearest" });
}
