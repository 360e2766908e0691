/**
 * The leap second on our clock (lib/ntp/leap.ts decides it, chrony's
 * rule; RFC 5905 §7.3 leap indicator) and the leap smear served to
 * clients (`server.leap_smear_s`). `LeapKeeper` holds what is armed,
 * carried out and smeared; the engine (engine.ts) calls `tick` after every
 * update and reads the state for its timer and its system state.
 */
import { Leap } from "../ntp/packet.ts";
import type { SystemState } from "../ntp/system_state.ts";
import {
  decideLeap,
  endOfDay,
  type LeapTable,
  leapTableExpired,
  smearRamp,
  utcDate,
  utcTime,
} from "../ntp/leap.ts";
import type { Clock } from "./clock.ts";
import type { Discipline } from "./discipline.ts";
import type { Association } from "./source.ts";

/** A log line: `once` set = logged only the first time under that key. */
export type LeapLog = (level: "info" | "warning", message: string, once?: string) => void;

/** What `LeapKeeper.tick` reads of the engine at one update. */
export interface LeapInputs {
  /** Served Unix time at raw time `t` (reads the discipline's model when called). */
  served(t: number): number;
  clock: Clock;
  discipline: Discipline;
  associations: Iterable<Association>;
  /** `clock.leapfile`, parsed; null = the sources decide. */
  table: LeapTable | null;
  /** `server.leap_smear_s`, seconds; 0 = no smear. */
  smearWindow: number;
  /** Our variables come from a source or orphan mode (synchronised, not the local fallback). */
  following: boolean;
  /** Our clock is synchronised. */
  synced: boolean;
  /** The sources' leap vote in force (Leap.none for an orphan parent). */
  vote: number;
  /** Our leap indicator now. */
  leap: number;
  log: LeapLog;
}

/** The leap second state of our clock and the smear under way. */
export class LeapKeeper {
  /** Leap indicator armed in the clock (setLeap); null before the first call. */
  armed: number | null = null;
  /** Served Unix time of the midnight the armed leap happens at. */
  leapAt = 0;
  /** The midnight of the last leap carried out (or seen done by the kernel). */
  leapDone = 0;
  /**
   * The leap smear under way: its leap's midnight `at`, the ramp's bounds
   * on the elapsed scale and the change (+1 insert).
   */
  smear: { at: number; from: number; to: number; change: 1 | -1 } | null = null;

  /** True when a leap (insert or delete) is armed in the clock. */
  get pending(): boolean {
    return this.armed === Leap.insert || this.armed === Leap.delete;
  }

  /**
   * The leap second, after every update at raw time `now`: first carries
   * out an armed leap whose midnight has passed — a kernel clock inserts
   * or deletes the second itself; the virtual clock steps its correction
   * by one second (served time repeats 23:59:59, as Linux does) and every
   * stored sample is moved by the same second, since the sources' time
   * scale stepped with ours. Then decides what to announce at the served
   * date (only on 30 June or 31 December: the leap file for the days it
   * covers, else the majority of the selectable sources) and arms the
   * clock's flag on the day, clearing it on any other day (after the
   * leap). Returns our leap indicator.
   */
  tick(now: number, e: LeapInputs): number {
    let served = e.served(now);
    const table = e.table;
    if (table && leapTableExpired(table, served)) {
      e.log(
        "warning",
        `${table.name}: expired on ${
          utcDate(table.expires)
        }; leap seconds after it come from the sources`,
        "leapfile-expired",
      );
    }
    const armed = this.armed;
    if (
      (armed === Leap.insert || armed === Leap.delete) && served >= this.leapAt &&
      this.leapDone !== this.leapAt
    ) {
      this.leapDone = this.leapAt;
      const dy = armed === Leap.insert ? -1 : 1;
      const what = armed === Leap.insert ? "inserted" : "deleted";
      if (!e.clock.steersKernel) {
        e.discipline.shift(dy);
        for (const a of e.associations) {
          a.stats.shift(dy);
          a.filter.shift(dy);
        }
        e.clock.apply(e.discipline.model, now, dy);
        served = e.served(now);
      }
      e.log(
        "info",
        `Leap second ${what} at ${utcDate(this.leapAt - 1)} ${
          armed === Leap.insert ? "23:59:60" : "23:59:59"
        } UTC${e.clock.steersKernel ? " (by the kernel)" : ""}`,
      );
    }
    let leap = e.leap;
    if (e.following) leap = decideLeap(served, e.vote, table);
    const arm = e.following && (leap === Leap.insert || leap === Leap.delete) ? leap : Leap.none;
    if (arm !== this.armed && !(this.armed === null && !e.synced)) this.#arm(arm, served, e);
    this.#smearTick(served, e);
    return leap;
  }

  /** Sets the clock's leap flag to `arm` at served time `served`, with its log line. */
  #arm(arm: number, served: number, e: LeapInputs): void {
    const table = e.table;
    e.clock.setLeap(arm);
    if (arm !== Leap.none) {
      this.leapAt = endOfDay(served);
      const from = table && this.leapAt <= table.expires ? table.name : "the sources";
      e.log(
        "info",
        `Leap second (${arm === Leap.insert ? "insert" : "delete"}) announced and armed for ${
          utcDate(served)
        } UTC midnight, from ${from}`,
      );
    } else if (this.armed === Leap.insert || this.armed === Leap.delete) {
      e.log("info", "Leap second flag cleared");
    }
    this.armed = arm;
  }

  /**
   * The leap smear (`smearWindow`), at served (UTC) time `served`: starts
   * one for an armed leap (centred on its midnight; a leap learned inside
   * the window is smeared from now on, over what is left of the window),
   * ends it once the clock carried the leap out and the window is over, and
   * drops it (a step of the served time, logged) when the leap is withdrawn
   * before its midnight.
   */
  #smearTick(served: number, e: LeapInputs): void {
    const w = e.smearWindow;
    const armed = this.armed;
    const sm = this.smear;
    if (
      !sm && w > 0 && (armed === Leap.insert || armed === Leap.delete) &&
      this.leapDone !== this.leapAt
    ) {
      const at = this.leapAt;
      const from = Math.max(at - w / 2, served);
      const to = at + w / 2;
      if (from >= at) return; // too late to smear before the midnight: the leap is served as is
      this.smear = { at, from, to, change: armed === Leap.insert ? 1 : -1 };
      e.log(
        "info",
        `Leap smear for clients from ${utcTime(from)} to ${utcTime(to)} (${
          Math.round(to - from)
        } s, linear); clients are sent LI 0`,
      );
      return;
    }
    if (!sm) return;
    if (this.leapDone === sm.at) {
      if (served + sm.change >= sm.to) {
        this.smear = null;
        e.log("info", "Leap smear ended");
      }
    } else if (armed !== Leap.insert && armed !== Leap.delete && served < sm.at) {
      this.smear = null;
      const off = smearRamp(sm.from, sm.to, sm.change, served);
      e.log(
        "warning",
        `Leap second withdrawn: smear dropped, served time steps by ${(-off).toFixed(3)} s`,
      );
    }
  }

  /**
   * The state served to clients from our clock state `s` (changed in
   * place and returned): with a smear window (`smearWindow` seconds > 0)
   * LI 0 instead of a leap, and the smear under way, if any.
   */
  served(s: SystemState, smearWindow: number): SystemState {
    if (smearWindow > 0 && (s.leap === Leap.insert || s.leap === Leap.delete)) {
      s.leap = Leap.none;
    }
    const sm = this.smear;
    if (sm) {
      if (s.leap === Leap.insert || s.leap === Leap.delete) s.leap = Leap.none;
      s.smearFrom = sm.from;
      s.smearTo = sm.to;
      s.smearChange = sm.change;
      s.smearStepped = this.leapDone === sm.at ? 1 : 0;
    }
    return s;
  }
}
