// The emulated Pico: rp2040js running a MicroPython rp2 image with cplscope's firmware on its
// flash file system, an optical bench on its pins, and a USB host whose device is served to
// Python over the simulated instrument's cable protocol (cplscope/sim/vusb.py), so that
// pyusb's VirtualUSBBackend reaches this board exactly as it reaches the twin.
//
//   node pico_bridge.mjs --bootrom B --image I --fs F --fs-offset N --cable PATH [--seed S]
//
// Prints one JSON line {"ready": true, ...} on stdout once the cable listens; everything else
// (the board's CDC console, USB events) goes to stderr. Ends on the cable's "quit" or when its
// stdin closes.
import fs from 'node:fs';
import net from 'node:net';
import { RP2040, ConsoleLogger, LogLevel } from 'rp2040js';

// --- command line ---------------------------------------------------------------------------
function parseArgs(argv) {
  const out = { seed: 1, fsOffset: null, fs: null };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i], v = argv[i + 1];
    if (v === undefined) throw new Error(`option ${k} needs a value`);
    switch (k) {
      case '--bootrom': out.bootrom = v; break;
      case '--image': out.image = v; break;
      case '--fs': out.fs = v; break;
      case '--fs-offset': out.fsOffset = Number(v); break;
      case '--cable': out.cable = v; break;
      case '--seed': out.seed = Number(v); break;
      default: throw new Error(`unknown option ${k}`);
    }
  }
  for (const k of ['bootrom', 'image', 'cable']) {
    if (!out[k]) throw new Error(`--${k} is required`);
  }
  if (out.fs && !(out.fsOffset >= 0)) throw new Error('--fs needs --fs-offset BYTES');
  return out;
}

const opts = parseArgs(process.argv.slice(2));
const log = (...a) => process.stderr.write(`[pico ${(clock.nanos / 1e6).toFixed(3)} ms] ${a.join(' ')}\n`);

// --- the chip -------------------------------------------------------------------------------
const FLASH_BASE = 0x10000000;
const mcu = new RP2040();
mcu.logger = new ConsoleLogger(LogLevel.Error);
const clock = mcu.clock;

function loadBootrom(path) {
  const raw = fs.readFileSync(path);
  if (raw.length !== 16384) throw new Error(`${path}: a bootrom is 16384 bytes, this is ${raw.length}`);
  mcu.loadBootrom(new Uint32Array(raw.buffer, raw.byteOffset, 4096));
}

function loadImage(path) {
  const raw = fs.readFileSync(path);
  const UF2_MAGIC0 = 0x0a324655, UF2_MAGIC1 = 0x9e5d5157, UF2_END = 0x0ab16f30;
  if (raw.length >= 512 && raw.readUInt32LE(0) === UF2_MAGIC0) {
    let blocks = 0;
    for (let off = 0; off + 512 <= raw.length; off += 512) {
      if (raw.readUInt32LE(off) !== UF2_MAGIC0 || raw.readUInt32LE(off + 4) !== UF2_MAGIC1 ||
          raw.readUInt32LE(off + 508) !== UF2_END) {
        throw new Error(`${path}: UF2 block ${off / 512} is damaged`);
      }
      const flags = raw.readUInt32LE(off + 8);
      if (flags & 1) continue; // "not main flash"
      const addr = raw.readUInt32LE(off + 12), n = raw.readUInt32LE(off + 16);
      if (addr < FLASH_BASE || addr + n > FLASH_BASE + mcu.flash.length || n > 476) {
        throw new Error(`${path}: UF2 block ${off / 512} targets 0x${addr.toString(16)}, outside flash`);
      }
      mcu.flash.set(raw.subarray(off + 32, off + 32 + n), addr - FLASH_BASE);
      blocks++;
    }
    if (!blocks) throw new Error(`${path}: no flash blocks in this UF2`);
    return;
  }
  if (raw.length > 0x200000) throw new Error(`${path}: larger than the Pico's 2 MB flash`);
  mcu.flash.set(raw, 0);
}

loadBootrom(opts.bootrom);
loadImage(opts.image);
if (opts.fs) mcu.flash.set(fs.readFileSync(opts.fs), opts.fsOffset);
mcu.core.PC = FLASH_BASE;

// The flash chip's write commands. rp2040js answers only READ_STATUS on the SSI, and its
// IO_QSPI reads as all ones, which the bootrom's flash functions take for an abort: the
// board's file system could not be written. Here IO_QSPI is a plain register file (reset
// value 0), and while the bootrom selects the chip by forcing QSPI SS low (GPIO_QSPI_SS_CTRL
// OUTOVER) every byte it puts in SSI DR0 is collected; every byte put there is answered (RXFLR
// counts them, DR0 reads 0: "not busy"); when the selection ends the command is applied: WRITE_ENABLE,
// PAGE_PROGRAM (bits only cleared, within the 256-byte page), the 4/32/64 KiB erases.
const flashSpi = { selected: false, bytes: [], writeEnabled: false, rx: 0, writes: 0 };
{
  const qspi = mcu.peripherals[0x40018];
  const ssi = mcu.peripherals[0x18000];
  const SS_CTRL = 0x0c, TXFLR = 0x20, RXFLR = 0x24, DR0 = 0x60;
  const regs = new Map();
  qspi.readUint32 = (off) => regs.get(off) || 0;
  qspi.writeUint32 = (off, value) => {
    regs.set(off, value >>> 0);
    if (off !== SS_CTRL) return;
    const low = ((value >> 8) & 3) === 2;
    if (low && !flashSpi.selected) { flashSpi.selected = true; flashSpi.bytes = []; flashSpi.rx = 0; }
    else if (!low && flashSpi.selected) { flashSpi.selected = false; flashCommand(flashSpi.bytes); }
  };
  const ssiWrite = ssi.writeUint32.bind(ssi);
  ssi.writeUint32 = (off, value) => {
    if (off === DR0) {  // every byte clocked out clocks one in (also with SS high)
      flashSpi.rx++;
      if (flashSpi.selected) { flashSpi.bytes.push(value & 0xff); return; }
    }
    ssiWrite(off, value);
  };
  const ssiRead = ssi.readUint32.bind(ssi);
  ssi.readUint32 = (off) => {
    if (off === RXFLR) return flashSpi.rx;
    if (off === TXFLR) return 0;
    if (off === DR0) { if (flashSpi.rx) flashSpi.rx--; return 0; }
    return ssiRead(off);
  };
}
function flashCommand(b) {
  if (!b.length) return;
  if (process.env.CPLSCOPE_PICO_TRACE_FLASH) log(`flash cmd ${b[0].toString(16)} ${b.length} bytes: ${Buffer.from(b.slice(0, 8)).toString('hex')}`);
  const addr = b.length >= 4 ? (b[1] << 16) | (b[2] << 8) | b[3] : 0;
  const erase = (size) => { mcu.flash.fill(0xff, addr & ~(size - 1), (addr & ~(size - 1)) + size); };
  switch (b[0]) {
    case 0x06: flashSpi.writeEnabled = true; return;
    case 0x04: flashSpi.writeEnabled = false; return;
    case 0x02:
      if (!flashSpi.writeEnabled) return;
      for (let i = 4; i < b.length; i++) {
        const a = (addr & ~0xff) | ((addr + i - 4) & 0xff);
        if (a < mcu.flash.length) mcu.flash[a] &= b[i];
      }
      break;
    case 0x20: if (flashSpi.writeEnabled) erase(0x1000); break;
    case 0x52: if (flashSpi.writeEnabled) erase(0x8000); break;
    case 0xd8: if (flashSpi.writeEnabled) erase(0x10000); break;
    default: return;
  }
  flashSpi.writeEnabled = false;
  flashSpi.writes++;
}

// A chip reset by the watchdog (a timeout, or machine.reset(), which forces it): rp2040js
// only calls this hook. The flash (with the file system as the firmware left it), the SRAM's
// contents and the watchdog's scratch and REASON registers survive, as on the chip; the core,
// the interrupt controller, the PIO, DMA, ADC, PWM, timer alarms, the GPIO functions and the
// USB connection are reset; the watchdog itself stops.
let rebootPending = false;
let reboots = 0;
mcu.peripherals[0x40058].onWatchdogTrigger = () => { rebootPending = true; };
function reboot() {
  rebootPending = false;
  reboots++;
  log(`watchdog reset #${reboots} (reason ${mcu.readUint32(0x40058008)})`);
  mcu.writeUint32(0x40058000, 0);                   // watchdog CTRL: stopped
  for (const base of [0x50200000, 0x50300000]) mcu.writeUint32(base, 0); // PIO CTRL: SMs off
  for (let ch = 0; ch < 12; ch++) mcu.writeUint32(0x50000010 + 0x40 * ch, 0); // DMA AL1_CTRL
  mcu.writeUint32(0x50000444, 0xfff);               // DMA CHAN_ABORT
  mcu.writeUint32(0x4004c000, 0);                   // ADC CS
  mcu.pwm.reset();
  mcu.writeUint32(0x40054038, 0);                   // TIMER INTE
  mcu.writeUint32(0x40054020, 0xf);                 // TIMER ARMED: disarm all
  for (let n = 0; n < 30; n++) mcu.writeUint32(0x40014004 + 8 * n, 0x1f); // GPIO: no function
  usb.writeUint32(SIE_CTRL, 0);                     // pull-up off: the board leaves the bus
  const core = mcu.core;
  core.enabledInterrupts = 0; core.pendingInterrupts = 0; core.PM = false; core.IPSR = 0;
  core.pendingSystick = core.pendingPendSV = core.pendingSVCall = core.pendingNMI = false;
  core.currentMode = 0; core.SPSEL = 0; core.nPRIV = false; core.waiting = false;
  core.VTOR = 0;
  core.registers.fill(0);
  core.bankedSP = 0;
  core.N = core.Z = core.C = core.V = false;
  core.reset();          // SP from the bootrom's vector table, as at power-up
  core.PC = FLASH_BASE;  // and from the second stage boot loader on, as the first boot
  updateHome();
  updateStrap();
}

// --- deterministic random numbers (mulberry32) ---------------------------------------------
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(opts.seed);

// --- the bench on the pins (GPIO numbers of firmware/board/rp2.py) --------------------------
const PIN = { photon: 2, photonLevel: 17, pemRef: 3, pemDrive: 6, hvCtrl: 10, keepalive: 11, hvEn: 12, shutter: 13, step: 14, dir: 15, home: 16, strap: 22 };
const bench = {
  pem_hz: 50000.0,        // PEM controller's 1f reference (external mode)
  pem_on: true,
  light_cps: 2.0e5,       // photon rate with HV on and the shutter open, counts/s
  dark_cps: 200.0,        // with HV on and the shutter closed
  g: 6.0e-3,              // modulation of the light at the PEM's 1f: rate × (1 + g/2 · sign)
  pulse_ns: 24,           // pulse width after the stretcher
  adc_mean: 1200,         // ADC0 (PMT analog), counts of 4095, with HV on and shutter open
  adc_amp: 200,           // its 1f modulation amplitude, counts
  adc_dark: 40,
  adc_noise: 8,
  pem_q: 1.0e4,           // PEM head: resonance quality factor and peak pickup (ADC2, counts)
  pickup_peak: 3000,
  mono_steps: 400,        // monochromator position, steps above the home switch
  strap: false,           // a jumper from GP22 to GND (maintenance mode at power-up)
  retrigger: false,       // a retriggerable stretcher: a photon during a pulse extends it
};
const counters = { photons: 0, steps: 0, pemEdges: 0 };

function lit() { return mcu.gpio[PIN.hvEn].outputValue; }
function open() { return mcu.gpio[PIN.shutter].outputValue; }
function pemLevel() { return mcu.gpio[PIN.pemRef].inputValue; }

// The bench's pin timeline: the PEM reference (a square wave on GP3, an edge every half
// period) and the photon pulses, applied cycle by cycle as the PIO steps (benchAt, from
// advance). On silicon these pads change at any cycle; as rp2040js alarms they would land
// only after the instruction or sleep they fall in, up to 8 cycles late, which made the
// measured PEM period jitter by ±8 cycles (beyond the firmware's lock tolerance).
// Photons: a Poisson process whose rate follows the light path and the PEM's half cycle,
// drawn by thinning: candidates at the largest rate the bench can have, each kept with
// probability rate(t)/largest at its own time, so the rate steps exactly at the edges.
const pem = { next: Infinity, level: false }; // ns of the next reference edge
const photon = { next: Infinity, end: Infinity }; // ns of the next candidate, of a pulse's end
let benchNext = Infinity; // the earliest of the three
function startPem() {
  pem.next = bench.pem_on ? clock.nanos + 0.5e9 / bench.pem_hz : Infinity;
  benchNext = Math.min(pem.next, photon.next, photon.end);
}
function photonRate() {
  if (!lit()) return 0;
  const base = open() ? bench.light_cps : bench.dark_cps;
  return base * (1 + (pemLevel() ? 0.5 : -0.5) * bench.g);
}
function maxRate() {
  return Math.max(bench.light_cps, bench.dark_cps, 1) * (1 + 0.5 * Math.abs(bench.g));
}
function nextPhoton(t) {
  // the default stretcher is non-retriggerable: nothing for two pulse widths after a pulse
  const gap = bench.retrigger ? CYCLE_NS : bench.pulse_ns * 2;
  photon.next = t + Math.max(-Math.log(1 - random()) / maxRate() * 1e9, gap);
}
// The photon line reaches GP2 and, through the build guide's jumper, GP17 (the guard's
// level-gated PWM counter of its high time).
function setPhoton(level) {
  mcu.gpio[PIN.photon].setInputValue(level);
  mcu.gpio[PIN.photonLevel].setInputValue(level);
}
// rp2040js hands an input change to the PWM only while no PWM pin at all is an output (it
// tests `gpioDirection && bit`, not `&`), so a slice gated by its B input (DIVMODE 1) never
// saw the level change after its CSR write; on the chip the counter runs exactly while B is
// high. Test the pin's own bit.
mcu.pwm.gpioOnInput = function (index) {
  if (this.gpioDirection & (1 << index)) return;
  for (const channel of this.channels) {
    if (channel.pinB1 === index || channel.pinB2 === index) channel.gpioBChanged();
  }
};
function benchAt(t) { // t: ns of the cycle about to be stepped
  if (t >= pem.next) {
    pem.level = !pem.level;
    mcu.gpio[PIN.pemRef].setInputValue(pem.level);
    counters.pemEdges++;
    pem.next += 0.5e9 / bench.pem_hz;
  }
  if (t >= photon.end) {
    setPhoton(false);
    photon.end = Infinity;
  }
  if (t >= photon.next) {
    if (random() * maxRate() < photonRate()) {
      setPhoton(true);
      photon.end = t + bench.pulse_ns;   // retriggerable: a pulse in progress is extended
      counters.photons++;
    }
    nextPhoton(t);
  }
  benchNext = Math.min(pem.next, photon.next, photon.end);
}

// On silicon a pin's input reads the pad, so a pin the chip drives reads back its own level
// (the shutter's state, the internal PEM drive as the reference); rp2040js keeps the input
// apart, so copy the output level into it.
for (const pin of mcu.gpio) {
  pin.addListener(() => { if (pin.outputEnable) pin.setInputValue(pin.outputValue); });
}

// Monochromator: step pulses on GP14 (rising edges), direction GP15, home switch GP16 to
// ground at or below home.
function updateHome() { mcu.gpio[PIN.home].setInputValue(bench.mono_steps > 0); }
// GP22 reads its pull-up unless the jumper is on (rp2040js models no pull on the input)
function updateStrap() { mcu.gpio[PIN.strap].setInputValue(!bench.strap); }
// Level changes of the safety outputs, in instrument time, for the stop tests: 1 high,
// 0 low, 'z' not driven (the build guide's pull-downs hold it low)
const pinEvents = [];
for (const name of ['keepalive', 'hvEn', 'shutter']) {
  const pin = PIN[name];
  mcu.gpio[pin].addListener((state) => {
    pinEvents.push({ pin: name, level: state === 1 ? 1 : state === 0 ? 0 : 'z', t_us: clock.nanos / 1000 });
    if (pinEvents.length > 100000) pinEvents.splice(0, 50000);
  });
}

mcu.gpio[PIN.step].addListener((state, old) => {
  const high = mcu.gpio[PIN.step].outputValue;
  if (high && !stepWasHigh) {
    bench.mono_steps += mcu.gpio[PIN.dir].outputValue ? 1 : -1;
    counters.steps++;
    updateHome();
  }
  stepWasHigh = high;
});
let stepWasHigh = false;

// A disabled PWM slice stands still on silicon. rp2040js's counter restarts when its DIV is
// written (Timer32's prescaler setter enables the timer whatever CSR.EN says), so a slice the
// firmware stopped and then reconfigures ran, with the outputs of its previous configuration,
// from the DIV write on: the excitation trigger pulsed during the gated-counting set-up.
// After every write the counter runs again exactly when CSR.EN (and the divider mode) says.
for (const ch of mcu.pwm.channels) {
  const write = ch.writeRegister.bind(ch);
  ch.writeRegister = (offset, value) => { write(offset, value); ch.updateEnable(); };
}

// PWM outputs seen as analog levels (after the board's RC filters) and frequencies.
function pwmChannel(pin) { return mcu.pwm.channels[(pin >> 1) & 7]; }
function pwmDuty(pin) {
  const ch = pwmChannel(pin);
  if (!(ch.csr & 1)) return 0;
  const cc = pin & 1 ? ch.cc >>> 16 : ch.cc & 0xffff;
  return Math.min(1, cc / (ch.top + 1));
}
function pwmHz(pin) {
  const ch = pwmChannel(pin);
  if (!(ch.csr & 1)) return 0;
  const div = (ch.div || 16) / 16;
  return 125e6 / (div * (ch.top + 1) * (ch.csr & 2 ? 2 : 1));
}
// The PEM head driven on GP6 (internal mode): a resonance of quality factor pem_q at pem_hz.
function pemPickup() {
  const f = pwmHz(PIN.pemDrive);
  if (!f) return 0;
  const x = 2 * bench.pem_q * (f - bench.pem_hz) / bench.pem_hz;
  return bench.pickup_peak / Math.sqrt(1 + x * x);
}

// ADC: channel 0 follows the light and the PEM phase, 1 the HV monitor, 2 the PEM pickup.
mcu.adc.onADCRead = (channel) => {
  let v;
  if (channel === 0) {
    const on = lit() && open();
    const phase = 2 * Math.PI * bench.pem_hz * clock.nanos * 1e-9;
    v = on ? bench.adc_mean + bench.adc_amp * Math.sin(phase) : bench.adc_dark;
    v += bench.adc_noise * (random() + random() + random() - 1.5) * 2;
  } else if (channel === 1) v = lit() ? pwmDuty(PIN.hvCtrl) * 4095 : 0;
  else if (channel === 2) v = pemPickup();
  else v = 876; // temperature sensor, about 27 °C
  const value = Math.max(0, Math.min(4095, Math.round(v)));
  // sampleTime µs, as the default implementation waits
  adcAlarm.value = value;
  adcAlarm.schedule(mcu.adc.sampleTime * 1000);
};
const adcAlarm = clock.createAlarm(() => mcu.adc.completeADCRead(adcAlarm.value, false));

// --- PIO stepped from the CPU loop (rp2040js would run it on wall-clock timers) --------------
for (const pio of mcu.pio) pio.run = () => {}; // started and stopped by CTRL: `pio.stopped`
// Writing SHIFTCTRL's FJOIN bits flushes a state machine's FIFOs on silicon (pico-sdk's
// pio_sm_clear_fifos, called by every StateMachine init); rp2040js keeps their words.
const SHIFTCTRL = 0xd0 - 0xc8, FJOIN = 0xc0000000;
for (const pio of mcu.pio) {
  for (const sm of pio.machines) {
    sm.stall = 0; // cycles of an instruction's delay still to wait
    sm.acc = 0;   // system clock cycles towards the machine's next cycle (clock divider)
    const clockDiv = () => (sm.clockDivInt || 65536) + sm.clockDivFrac / 256;
    sm.div = clockDiv(); // kept at each register write, not worked out every cycle
    const write = sm.writeUint32.bind(sm);
    sm.writeUint32 = (offset, value) => {
      const before = sm.shiftCtrl;
      write(offset, value);
      sm.div = clockDiv();
      if (offset === SHIFTCTRL && ((before ^ value) & FJOIN)) {
        sm.txFIFO.reset();
        sm.rxFIFO.reset();
        sm.updateDMATx();
        sm.updateDMARx();
      }
    };
  }
}
// Only enabled state machines run (rp2040js's RPPIO.step steps disabled ones too, which on
// silicon are halted), each at its clock divider, and an instruction's delay stalls its
// machine for that many of its cycles (rp2040js only counts them).
// The clock advances with them, cycle by cycle: an alarm due at a cycle (a PWM output's edge,
// a timer) fires before the PIO steps that cycle, as on silicon, not after the CPU
// instruction it falls in (which put the trigger PWM's edges up to an instruction late at
// the PIO, a jitter silicon does not have).
function advance(cycles) {
  let t = clock.nanos;
  for (let c = 0; c < cycles; c++, t += CYCLE_NS) {
    if (clock.nextAlarm && clock.nextAlarm.nanos <= t) clock.tick(t - clock.nanos);
    if (t >= benchNext) benchAt(t);
    if (probe.on) probeAt(t);
    for (const pio of mcu.pio) {
      if (pio.stopped) continue;
      for (const m of pio.machines) {
        if (!m.enabled) continue;
        if (m.div !== 1) {
          m.acc += 1;
          if (m.acc < m.div) continue;
          m.acc -= m.div;
        }
        if (m.stall > 0) { m.stall--; continue; }
        const before = m.cycles;
        m.step();
        if (!m.waiting) m.stall = m.cycles - before - 1;
      }
      pio.checkChangedPins();
    }
  }
  clock.tick(t - clock.nanos);
}

// --- the gate probe -------------------------------------------------------------------------
// Gated counting watched cycle by cycle: the levels of the trigger (GP18), the gate start
// GSTART (GP19) and the gated photons (GP20) at every change, and photons put on the photon
// line (GP2, and GP17 by the jumper, as the bench's) at chosen offsets (cycles) after each
// rising edge of the trigger: pulse n gets the photons of offsets[n mod offsets.length], each `width` cycles long, for `limit` pulses; the probe
// stops at the rising edge of the trigger after the next. Read (and emptied) by the cable's
// 'gate_probe' op; at most `max` changes and photons are kept (then `overflow` is set).
const GATE_PINS = [18, 19, 20]; // bit 0 trigger, bit 1 GSTART, bit 2 gated photon
const probe = { on: false, offsets: [[]], width: 2, limit: Infinity, pulse: 0, levels: 0, changes: [],
  photons: [], queue: [], max: 100000, overflow: false };
function probeLevels() {
  let v = 0;
  for (let i = 0; i < GATE_PINS.length; i++) if (mcu.gpio[GATE_PINS[i]].inputValue) v |= 1 << i;
  return v;
}
function probeAt(t) {
  const cycle = Math.round(t / CYCLE_NS);
  const v = probeLevels();
  if (v !== probe.levels) {
    if (probe.changes.length < probe.max) probe.changes.push([cycle, v]);
    else probe.overflow = true;
    if (v & 1 && !(probe.levels & 1)) { // the trigger rose: this pulse's photons
      const offsets = probe.pulse < probe.limit ? probe.offsets[probe.pulse % probe.offsets.length] : [];
      probe.pulse++;
      if (probe.pulse > probe.limit + 1) probe.on = false; // a pulse without photons, then off
      for (const off of offsets) {
        const at = cycle + off;
        if (probe.photons.length < probe.max) probe.photons.push([at, cycle]);
        else probe.overflow = true;
        probe.queue.push({ at, level: true }, { at: at + probe.width, level: false });
      }
      probe.queue.sort((a, b) => a.at - b.at || a.level - b.level);
    }
    probe.levels = v;
  }
  const q = probe.queue;
  while (q.length && q[0].at <= cycle) setPhoton(q.shift().level);
}
function gateProbe(req) {
  if (req.start) {
    const offsets = req.start.offsets;
    if (!Array.isArray(offsets) || !offsets.length || !offsets.every((o) => Array.isArray(o)
        && o.every((c) => Number.isInteger(c) && c >= 0))) {
      throw new Error('gate_probe start: offsets is a list of lists of cycles >= 0');
    }
    Object.assign(probe, { on: true, offsets, width: req.start.width || 2, pulse: 0,
      limit: req.start.limit > 0 ? req.start.limit : Infinity,
      levels: probeLevels(), changes: [], photons: [], queue: [], overflow: false });
  }
  const out = { on: probe.on, cycle: Math.round(clock.nanos / CYCLE_NS), levels: probe.levels,
    changes: probe.changes, photons: probe.photons, pulses: probe.pulse,
    overflow: probe.overflow };
  probe.changes = [];
  probe.photons = [];
  if (req.stop) {
    probe.on = false;
    setPhoton(false);
    probe.queue = [];
  }
  return out;
}

// --- timeouts --------------------------------------------------------------------------------
// A transfer's timeout runs in instrument time, as a host's runs in real time against a real
// board: the emulator is slower than silicon, so a wall-clock timeout would fail a board that
// is on time. A wall-clock limit (30× longer, at least 60 s) still ends a stuck emulator.
function timeout(ms, fn) {
  let done = false;
  const once = () => { if (!done) { done = true; alarm.cancel(); clearTimeout(wall); fn(); } };
  const alarm = clock.createAlarm(once);
  alarm.schedule(ms * 1e6);
  const wall = setTimeout(once, Math.max(60000, 30 * ms));
  return { cancel() { done = true; alarm.cancel(); clearTimeout(wall); } };
}

// --- the USB host ---------------------------------------------------------------------------
const usb = mcu.usbCtrl;
const EP0_SIZE = 64;
const SIE_CTRL = 0x4c, EP_STALL_ARM = 0x68, PULLUP_EN = 1 << 16;
const host = {
  pullup: false,
  generation: 0,
  device: null,        // Uint8Array(18) once enumerated
  config: null,        // full configuration descriptor
  enumerated: false,
  ctrl: null,          // the control transfer in progress
  ctrlQueue: [],
  inQueues: new Map(),  // endpoint → [Uint8Array packets]
  inWaiters: new Map(), // endpoint → [pending reads]
  outArmed: new Map(),  // endpoint → armed OUT buffer size, or absent
  outQueues: new Map(), // endpoint → [pending writes]
  cdcIn: -1, cdcOut: -1,
  console: '',
  cdcRx: '',           // CDC bytes not yet taken by cdc_read
  stats: { in_packets: 0, in_bytes: 0, out_bytes: 0, enumerations: 0, stalls: 0, resets: 0 },
};

if (process.env.CPLSCOPE_PICO_TRACE_USB) {
  const ibr = usb.indicateBufferReady.bind(usb);
  usb.indicateBufferReady = (ep, out) => { log(`BUFF_STATUS ep${ep} ${out ? 'OUT' : 'IN'}`); ibr(ep, out); };
  const ssp = usb.sendSetupPacket.bind(usb);
  usb.sendSetupPacket = (p) => { log(`SETUP ${Buffer.from(p).toString('hex')}`); ssp(p); };
}
const origWrite = usb.writeUint32.bind(usb);
usb.writeUint32 = (offset, value) => {
  origWrite(offset, value);
  if (offset === SIE_CTRL) {
    const up = (value & PULLUP_EN) !== 0;
    if (up !== host.pullup) {
      host.pullup = up;
      if (up) { log('USB pull-up on: the board connects'); connectBoard(); }
      else { log('USB pull-up off: the board disconnects'); disconnectBoard(); }
    }
  } else if (offset === EP_STALL_ARM && value & 3 && host.ctrl) {
    host.stats.stalls++;
    finishCtrl(-9, 'the board stalled the control request');
  }
};
// rp2040js queues the two halves of a double-buffered IN endpoint buffer 1 first; the
// controller sends buffer 0 first. Put them back in bus order.
const origDpram = usb.DPRAMUpdated.bind(usb);
usb.DPRAMUpdated = (offset, value) => {
  const ep = (offset - 0x80) >> 3;
  const alarm = offset >= 0x88 && offset < 0x100 && !(offset & 4) ? usb.endpointWriteAlarms[ep] : null;
  const before = alarm ? alarm.buffers.length : 0;
  origDpram(offset, value);
  if (alarm && alarm.buffers.length === before + 2) {
    const b = alarm.buffers;
    [b[before], b[before + 1]] = [b[before + 1], b[before]];
  }
};
usb.onUSBEnabled = () => { if (host.pullup) connectBoard(); };
usb.onResetReceived = () => {};

function disconnectBoard() {
  host.enumerated = false;
  host.device = host.config = null;
  host.generation++;
  failAll(-4, 'the board disconnected');
}

function failAll(status, text) {
  if (host.ctrl) finishCtrl(status, text);
  for (const t of host.ctrlQueue.splice(0)) t.done(status, Buffer.from(text));
  for (const [, ws] of host.inWaiters) for (const w of ws.splice(0)) w.done(status, Buffer.from(text));
  for (const [, ws] of host.outQueues) for (const w of ws.splice(0)) w.done(status, Buffer.from(text));
  host.inQueues.clear();
  host.outArmed.clear();
}

let enumerating = false;
async function connectBoard() {
  if (enumerating) return;
  enumerating = true;
  try {
    await busReset();
    const gen = host.generation;
    const dev = await ctrlIn(0x80, 6, 0x0100, 0, 18);
    await ctrlOut(0x00, 5, 1, 0);
    const head = await ctrlIn(0x80, 6, 0x0200, 0, 9);
    const total = head[2] | (head[3] << 8);
    const cfg = await ctrlIn(0x80, 6, 0x0200, 0, total);
    await ctrlOut(0x00, 9, cfg[5], 0);
    if (gen !== host.generation) return;
    host.device = dev; host.config = cfg; host.enumerated = true;
    host.stats.enumerations++;
    findCdc(cfg);
    if (host.cdcIn >= 0) {
      await ctrlOut(0x21, 0x22, 3, host.cdcInterface); // CDC SET_CONTROL_LINE_STATE: DTR | RTS
      pumpCdc();
    }
    log(`enumerated: ${hex16(dev, 8)}:${hex16(dev, 10)}, configuration of ${total} bytes`);
  } catch (e) {
    log(`enumeration failed: ${e.message}`);
  } finally {
    enumerating = false;
  }
}
function hex16(b, i) { return (b[i] | (b[i + 1] << 8)).toString(16).padStart(4, '0'); }

function busReset() {
  return new Promise((resolve) => {
    usb.onResetReceived = () => { usb.onResetReceived = () => {}; resolve(); };
    usb.resetDevice();
    host.stats.resets++;
  });
}

function findCdc(cfg) {
  host.cdcIn = host.cdcOut = -1;
  let intfClass = -1;
  for (let i = 0; i + 2 <= cfg.length && cfg[i] >= 2; i += cfg[i]) {
    if (cfg[i + 1] === 4) intfClass = cfg[i + 5];
    if (cfg[i + 1] === 4 && intfClass === 2) host.cdcInterface = cfg[i + 2];
    if (cfg[i + 1] === 5 && intfClass === 10) {
      const ep = cfg[i + 2];
      if (ep & 0x80) host.cdcIn = ep & 0xf; else host.cdcOut = ep & 0xf;
    }
  }
}

// The board's console (the CDC REPL): read continuously, kept for the test log.
function pumpCdc() {
  const gen = host.generation;
  const again = () => { if (gen === host.generation && host.cdcIn >= 0) bulkIn(host.cdcIn, 64, 0, onData); };
  const onData = (status, data) => {
    if (status === 0 && data.length) {
      const text = data.toString('latin1');
      host.console += text;
      host.cdcRx += text;
      if (host.cdcRx.length > 1000000) host.cdcRx = host.cdcRx.slice(-500000);
      if (host.console.length > 200000) host.console = host.console.slice(-100000);
      process.stderr.write(text);
    }
    if (status === 0) again();
  };
  again();
}

// Control transfers: one at a time, in the three stages of USB 2.0 §8.5.3.
function submitCtrl(t) {
  host.ctrlQueue.push(t);
  if (!host.ctrl) nextCtrl();
}
function nextCtrl() {
  const t = host.ctrlQueue.shift();
  if (!t) return;
  host.ctrl = t;
  t.got = [];
  t.gotLen = 0;
  t.sent = 0;
  t.stage = 'data';
  if (t.timeoutMs > 0) t.timer = timeout(t.timeoutMs, () => { if (host.ctrl === t) finishCtrl(-7, 'control transfer timed out'); });
  usb.sendSetupPacket(t.setup);
}
function finishCtrl(status, text) {
  const t = host.ctrl;
  if (!t) return;
  host.ctrl = null;
  if (t.timer) t.timer.cancel();
  t.done(status, status === 0 ? Buffer.concat(t.got) : Buffer.from(text || ''));
  nextCtrl();
}
function ep0In(buf) {
  const t = host.ctrl;
  if (!t) return;
  if (t.dirIn && t.stage === 'data') {
    t.got.push(Buffer.from(buf));
    t.gotLen += buf.length;
    if (buf.length < EP0_SIZE || t.gotLen >= t.wLength) t.stage = 'status';
    // status: the board arms EP0 OUT for the host's zero-length packet (ep0OutArmed)
  } else if (!t.dirIn && buf.length === 0) {
    finishCtrl(0);
  }
}
function ep0OutArmed() {
  const t = host.ctrl;
  if (!t) { usb.endpointReadDone(0, new Uint8Array(0)); return; }
  if (t.dirIn) {
    usb.endpointReadDone(0, new Uint8Array(0));
    // done once the status packet has reached the board (after the controller's read
    // delay), never before: a SETUP overtaking it makes TinyUSB panic ("Can't continue
    // xfer on inactive ep 00")
    if (t.stage === 'status') {
      const a = clock.createAlarm(() => { if (host.ctrl === t) finishCtrl(0); });
      a.schedule((usb.readDelayMicroseconds + 1) * 1000);
    }
  } else {
    const chunk = t.data.subarray(t.sent, t.sent + EP0_SIZE);
    t.sent += chunk.length;
    usb.endpointReadDone(0, chunk);
  }
}
// Queue one control transfer: a SETUP of these fields (wLength: `length` for IN, the data's
// length for OUT), then its data and status stages; `done(status, data)` at the end.
function submitSetup(bm, req, value, index, length, data, timeoutMs, done) {
  const dirIn = (bm & 0x80) !== 0;
  const setup = Buffer.alloc(8);
  setup.writeUInt8(bm, 0); setup.writeUInt8(req, 1); setup.writeUInt16LE(value, 2);
  setup.writeUInt16LE(index, 4); setup.writeUInt16LE(dirIn ? length : data.length, 6);
  submitCtrl({ setup: new Uint8Array(setup), dirIn, wLength: length, data, timeoutMs, done });
}
function ctrl(bm, req, value, index, length, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    submitSetup(bm, req, value, index, length, new Uint8Array(0), timeoutMs,
      (status, out) => status === 0 ? resolve(out)
        : reject(Object.assign(new Error(out.toString()), { status })));
  });
}
const ctrlIn = (bm, req, value, index, length) => ctrl(bm, req, value, index, length);
const ctrlOut = (bm, req, value, index) => ctrl(bm, req, value, index, 0);

// Bulk transfers with libusb's completion rules: an IN transfer ends on a short packet or
// when `length` bytes arrived; an OUT transfer is split into 64-byte packets.
usb.onEndpointWrite = (ep, buf) => {
  if (ep === 0) { ep0In(buf); return; }
  host.stats.in_packets++;
  host.stats.in_bytes += buf.length;
  const q = host.inQueues.get(ep) || [];
  q.push(Buffer.from(buf));
  host.inQueues.set(ep, q);
  serveIn(ep);
};
usb.onEndpointRead = (ep, size) => {
  if (ep === 0) { ep0OutArmed(); return; }
  host.outArmed.set(ep, size);
  serveOut(ep);
};

// A transfer waiting in `queues` for endpoint `ep`: it ends by `w.done(status, data)` (which
// stops its timer), or after `timeoutMs` of instrument time, taken out of the queue, with
// what `expired(w)` returns as [status, data].
function queueTransfer(queues, ep, w, timeoutMs, done, expired) {
  w.done = (status, data) => { if (w.timer) w.timer.cancel(); done(status, data); };
  const ws = queues.get(ep) || [];
  ws.push(w);
  queues.set(ep, ws);
  if (timeoutMs > 0) {
    w.timer = timeout(timeoutMs, () => {
      const list = queues.get(ep) || [];
      const i = list.indexOf(w);
      if (i < 0) return;
      list.splice(i, 1);
      done(...expired(w));
    });
  }
}

function bulkIn(ep, length, timeoutMs, done) {
  const w = { length, got: [], gotLen: 0, timer: null };
  queueTransfer(host.inWaiters, ep, w, timeoutMs, done, () => (w.gotLen
    ? [0, Buffer.concat(w.got)] : [-7, Buffer.from('bulk IN timed out')]));
  serveIn(ep);
}
function serveIn(ep) {
  const q = host.inQueues.get(ep) || [];
  const ws = host.inWaiters.get(ep) || [];
  while (q.length && ws.length) {
    const w = ws[0];
    const room = w.length - w.gotLen;
    let pkt = q[0];
    if (pkt.length > room) { // libusb: overflow unless the buffer is a multiple of the packet size
      ws.shift();
      w.done(-8, Buffer.from('bulk IN overflow'));
      continue;
    }
    q.shift();
    w.got.push(pkt);
    w.gotLen += pkt.length;
    if (pkt.length < 64 || w.gotLen === w.length) {
      ws.shift();
      w.done(0, Buffer.concat(w.got));
    }
  }
}
function bulkOut(ep, data, timeoutMs, done) {
  // an empty transfer is one zero-length packet
  const w = { data, sent: 0, timer: null, zlpPending: data.length === 0 };
  queueTransfer(host.outQueues, ep, w, timeoutMs, done,
    () => [-7, Buffer.from('bulk OUT timed out')]);
  serveOut(ep);
}
function serveOut(ep) {
  const ws = host.outQueues.get(ep) || [];
  while (ws.length && host.outArmed.has(ep)) {
    const w = ws[0];
    const size = host.outArmed.get(ep);
    host.outArmed.delete(ep);
    const chunk = w.data.subarray(w.sent, w.sent + Math.min(size, 64));
    w.sent += chunk.length;
    if (chunk.length === 0) w.zlpPending = false;
    host.stats.out_bytes += chunk.length;
    usb.endpointReadDone(ep, chunk);
    if (w.sent >= w.data.length && !w.zlpPending) {
      ws.shift();
      w.done(0, u32(w.sent));
    }
  }
}
function u32(n) { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0, 0); return b; }

// --- the cable (cplscope/sim/vusb.py's wire format) ------------------------------------------
const OP = { ENUM: 1, OPEN: 2, CTRL: 3, BULK_OUT: 4, BULK_IN: 5, CLEAR_HALT: 6, RESET: 7, CONTROL: 16 };
function answer(sock, status, payload) {
  const head = Buffer.alloc(5);
  head.writeInt8(status, 0);
  head.writeUInt32LE(payload.length, 1);
  if (!sock.destroyed) sock.write(Buffer.concat([head, payload]));
}
function staleGen(gen) { return !host.enumerated || gen !== host.generation; }

function handle(sock, op, p, reply) {
  const NO_DEVICE = () => reply(-4, Buffer.from('no such device (the board is off the bus)'));
  switch (op) {
    case OP.ENUM: {
      if (!host.enumerated) return reply(0, Buffer.alloc(0));
      const head = Buffer.alloc(8);
      head.writeUInt32LE(host.generation, 0); head.writeUInt8(1, 4); head.writeUInt8(1, 5);
      head.writeUInt16LE(host.config.length, 6);
      return reply(0, Buffer.concat([head, host.device, host.config]));
    }
    case OP.OPEN:
      return staleGen(p.readUInt32LE(0)) ? NO_DEVICE() : reply(0, Buffer.alloc(0));
    case OP.CTRL: {
      const gen = p.readUInt32LE(0), bm = p[4], req = p[5];
      const value = p.readUInt16LE(6), index = p.readUInt16LE(8), length = p.readUInt16LE(10);
      const timeout = p.readUInt32LE(12), data = p.subarray(16);
      if (staleGen(gen)) return NO_DEVICE();
      return submitSetup(bm, req, value, index, length, new Uint8Array(data), timeout, reply);
    }
    case OP.BULK_OUT: {
      const gen = p.readUInt32LE(0), ep = p[4], timeout = p.readUInt32LE(5);
      if (staleGen(gen)) return NO_DEVICE();
      return bulkOut(ep & 0x0f, new Uint8Array(p.subarray(9)), timeout, reply);
    }
    case OP.BULK_IN: {
      const gen = p.readUInt32LE(0), ep = p[4], length = p.readUInt32LE(5), timeout = p.readUInt32LE(9);
      if (staleGen(gen)) return NO_DEVICE();
      return bulkIn(ep & 0x0f, length, timeout, reply);
    }
    case OP.CLEAR_HALT: {
      const gen = p.readUInt32LE(0), ep = p[4];
      if (staleGen(gen)) return NO_DEVICE();
      // CLEAR_FEATURE(ENDPOINT_HALT) to the endpoint
      return submitSetup(0x02, 1, 0, ep, 0, new Uint8Array(0), 2000, reply);
    }
    case OP.RESET: {
      if (staleGen(p.readUInt32LE(0))) return NO_DEVICE();
      failAll(-4, 'port reset');
      host.enumerated = false;
      return connectBoard().then(() => reply(0, Buffer.alloc(0)));
    }
    case OP.CONTROL:
      return reply(0, Buffer.from(JSON.stringify(controlOp(JSON.parse(p.toString('utf8'))))));
    default:
      return reply(-12, Buffer.from(`unknown cable op ${op}`));
  }
}

function controlOp(req) {
  switch (req.op) {
    case 'stats':
      return { time_us: clock.nanos / 1000, visible: host.enumerated, plugged: host.pullup,
        generation: host.generation, firmware_up: host.enumerated, firmware_connections: host.stats.enumerations,
        ...host.stats, ...counters, bench: { ...bench }, reboots, flash_writes: flashSpi.writes,
        hv_on: lit(), shutter_open: open(),
        watch: Object.fromEntries([...watch].map(([a, n]) => ['0x' + a.toString(16), n])),
        callers: Object.fromEntries(callers) };
    case 'time':
      return { time_us: clock.nanos / 1000 };
    case 'cpu': // where the core is: for a debugger's addr2line against the image's ELF
      return { pc: mcu.core.PC >>> 0, lr: mcu.core.LR >>> 0, waiting: mcu.core.waiting,
        sp: mcu.core.SP >>> 0, stack: Array.from({ length: 64 }, (_, i) => mcu.readUint32(((mcu.core.SP >>> 0) + 4 * i) >>> 0) >>> 0),
        time_us: clock.nanos / 1000 };
    case 'profile': {
      const top = [...(profile || new Map())].sort((a, b) => b[1] - a[1]).slice(0, req.top || 60);
      if (req.reset && profile) profile.clear();
      return { samples: top.map(([pc, n]) => ['0x' + pc.toString(16), n]) };
    }
    case 'console':
      return { text: host.console };
    case 'cdc_read': { // what the CDC REPL sent since the last cdc_read (the pty relay)
      const text = host.cdcRx; host.cdcRx = '';
      return { text, connected: host.enumerated && host.cdcOut >= 0 };
    }
    case 'pin_events': { // safety-output level changes since the last call, and the levels now
      const events = pinEvents.splice(0);
      const now = (p) => { const v = mcu.gpio[p].value; return v === 1 ? 1 : v === 0 ? 0 : 'z'; };
      return { events, now: { keepalive: now(PIN.keepalive), hvEn: now(PIN.hvEn), shutter: now(PIN.shutter) }, time_us: clock.nanos / 1000 };
    }
    case 'pads': { // input enable, pulls and function of the firmware's input and ADC pins
      const out = {};
      for (const n of [2, 3, 16, 22, 26, 27, 28]) {
        const g = mcu.gpio[n];
        out[n] = { ie: !!g.inputEnable, pu: !!g.pullupEnabled, pd: !!g.pulldownEnabled, fn: g.functionSelect };
      }
      return { pads: out };
    }
    case 'repl': { // type `text` on the board's CDC REPL (Ctrl-C is "\u0003")
      if (host.cdcOut < 0 || !host.enumerated) throw new Error('the board has no CDC REPL on the bus');
      bulkOut(host.cdcOut, new Uint8Array(Buffer.from(req.text, 'latin1')), 0, () => {});
      return { ok: true };
    }
    case 'bench': {
      for (const [k, v] of Object.entries(req.set || {})) {
        if (!(k in bench)) throw new Error(`no bench setting ${k}`);
        bench[k] = typeof bench[k] === 'boolean' ? !!v : Number(v);
      }
      if ('pem_hz' in (req.set || {}) || 'pem_on' in (req.set || {})) startPem();
      if ('mono_steps' in (req.set || {})) updateHome();
      if ('strap' in (req.set || {})) updateStrap();
      return { bench: { ...bench } };
    }
    case 'gate_probe': // {start: {offsets, width}} | {} (read) | {stop: true}; see probeAt
      return gateProbe(req);
    case 'quit':
      setImmediate(() => process.exit(0));
      return { ok: true };
    default:
      throw new Error(`unknown control op ${req.op}`);
  }
}

function serveCable(sock) {
  let buf = Buffer.alloc(0);
  let busy = Promise.resolve();
  sock.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5) {
      const op = buf[0], n = buf.readUInt32LE(1);
      if (buf.length < 5 + n) break;
      const p = buf.subarray(5, 5 + n);
      buf = buf.subarray(5 + n);
      // requests on one connection are answered in order
      busy = busy.then(() => new Promise((resolve) => {
        const reply = (status, payload) => { answer(sock, status, payload); resolve(); };
        try { handle(sock, op, Buffer.from(p), reply); }
        catch (e) { reply(-1, Buffer.from(String(e.message || e))); }
      }));
    }
  });
  sock.on('error', () => {});
}

// --- main loop ------------------------------------------------------------------------------
// Debugging: CPLSCOPE_PICO_WATCH=0xADDR,0xADDR counts how often the core enters those
// functions (addresses from the image's ELF, e.g. gc_collect, gc_alloc); see stats 'watch'.
const callers = new Map(); // 'pc<lr' → entries, for the watched functions (their callers)
const watch = new Map((process.env.CPLSCOPE_PICO_WATCH || '').split(',').filter(Boolean)
  .map((a) => [Number(a) & ~1, 0]));
// CPLSCOPE_PICO_PROFILE=1: the core's PC every 997 instructions, for 'profile' (where the
// firmware spends its time; resolve with addr2line against the image's ELF).
const profile = process.env.CPLSCOPE_PICO_PROFILE ? new Map() : null;
let profileTick = 0;
const CYCLE_NS = 8; // 125 MHz
const SLICE_NS = 200000; // instrument time per turn of Node's event loop
function runSlice() {
  const end = clock.nanos + SLICE_NS;
  const core = mcu.core;
  while (clock.nanos < end) {
    if (rebootPending) reboot();
    if (core.waiting) {
      let dt = clock.nanosToNextAlarm;
      if (!(dt > 0)) dt = 1000;
      dt = Math.min(dt, end - clock.nanos, Math.max(benchNext - clock.nanos, CYCLE_NS));
      const cycles = Math.max(1, Math.round(dt / CYCLE_NS));
      advance(cycles);
    } else {
      if (watch.size && watch.has(core.PC)) {
        watch.set(core.PC, watch.get(core.PC) + 1);
        const lr = (core.LR >>> 0) & ~1;
        const key = core.PC.toString(16) + '<' + lr.toString(16);
        callers.set(key, (callers.get(key) || 0) + 1);
      }
      if (profile && ++profileTick === 997) {
        profileTick = 0;
        const pc = core.PC >>> 0;
        profile.set(pc, (profile.get(pc) || 0) + 1);
      }
      advance(core.executeInstruction());
    }
  }
}

function loop() {
  try { runSlice(); }
  catch (e) { log(`emulator stopped: ${e.stack || e}`); return; }
  setImmediate(loop);
}

const server = net.createServer(serveCable);
try { fs.unlinkSync(opts.cable); } catch {}
server.listen(opts.cable, () => {
  process.stdout.write(JSON.stringify({ ready: true, cable: `unix:${opts.cable}` }) + '\n');
  nextPhoton(clock.nanos);
  startPem();
  updateHome();
  updateStrap();
  loop();
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
