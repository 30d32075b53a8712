//! How simulated sensors behave: per-kind normal and alarm bands, readings that drift by
//! a random walk, alarm runs of consecutive messages, and occasional faults.
//!
//! Units: smoke obscuration %/m, water level m, manhole cover tilt in degrees, gas %LEL.

use rand::Rng;

/// One reading produced by [`SensorSim::next`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// `normal`, `alarm` or `fault`.
    pub state: &'static str,
    /// The measured value, in the kind's unit.
    pub reading: f64,
    /// Per-sensor message counter, from 1.
    pub seq: u64,
}

/// Normal band, step of the random walk and alarm band of a sensor kind.
#[derive(Debug, Clone, Copy)]
struct Model {
    normal: (f64, f64),
    step: f64,
    alarm: (f64, f64),
}

fn model(kind: &str) -> Model {
    let (normal, step, alarm) = match kind {
        // smoke obscuration, %/m
        "smoke" => ((0.0, 0.6), 0.05, (4.0, 12.0)),
        // water level above the drain bottom, m
        "water_level" => ((0.2, 1.5), 0.02, (2.6, 3.5)),
        // cover tilt, degrees
        "manhole_cover" => ((0.0, 3.0), 0.3, (15.0, 45.0)),
        // combustible gas, %LEL
        "gas" => ((0.0, 8.0), 0.5, (20.0, 60.0)),
        _ => ((0.0, 1.0), 0.05, (5.0, 10.0)),
    };
    Model {
        normal,
        step,
        alarm,
    }
}

/// The state of one simulated sensor: a reading that drifts within its kind's normal band,
/// alarm runs that jump into the alarm band, and single fault messages.
#[derive(Debug, Clone)]
pub struct SensorSim {
    model: Model,
    reading: f64,
    alarm_left: u32,
    seq: u64,
}

impl SensorSim {
    /// A sensor of `kind` with a random start reading in the normal band.
    pub fn new(kind: &str, rng: &mut impl Rng) -> SensorSim {
        let model = model(kind);
        let reading = rng.random_range(model.normal.0..=model.normal.1);
        SensorSim {
            model,
            reading,
            alarm_left: 0,
            seq: 0,
        }
    }

    /// The next reading. An alarm run of `alarm_run` messages starts with a probability
    /// chosen so that about `alarm_ratio` of all messages are alarms.
    pub fn next(
        &mut self,
        rng: &mut impl Rng,
        alarm_ratio: f64,
        fault_ratio: f64,
        alarm_run: u32,
    ) -> Sample {
        self.seq += 1;
        let m = self.model;
        let run = f64::from(alarm_run.max(1));
        let f = alarm_ratio.clamp(0.0, 1.0);
        let p_start = if f >= 1.0 {
            1.0
        } else {
            f / (run * (1.0 - f) + f)
        };
        if self.alarm_left == 0 && rng.random_bool(p_start) {
            self.alarm_left = alarm_run.max(1);
            self.reading = rng.random_range(m.alarm.0..=m.alarm.1);
        }
        let (state, band) = if self.alarm_left > 0 {
            self.alarm_left -= 1;
            ("alarm", m.alarm)
        } else if rng.random_bool(fault_ratio.clamp(0.0, 1.0)) {
            ("fault", m.normal)
        } else {
            ("normal", m.normal)
        };
        let step = m.step * if state == "alarm" { 4.0 } else { 1.0 };
        self.reading = (self.reading + rng.random_range(-step..=step)).clamp(band.0, band.1);
        Sample {
            state,
            reading: self.reading,
            seq: self.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn alarms_come_in_runs_and_readings_stay_in_band() {
        let mut rng = StdRng::seed_from_u64(5);
        for kind in crate::SENSOR_KINDS {
            let m = model(kind);
            let mut sim = SensorSim::new(kind, &mut rng);
            let samples: Vec<Sample> = (0..20_000)
                .map(|_| sim.next(&mut rng, 0.05, 0.01, 4))
                .collect();
            let alarms = samples.iter().filter(|s| s.state == "alarm").count();
            assert!((600..=1400).contains(&alarms), "{kind}: {alarms} alarms");
            let mut run = 0;
            for (i, s) in samples.iter().enumerate() {
                assert_eq!(s.seq, i as u64 + 1);
                let band = if s.state == "alarm" {
                    m.alarm
                } else {
                    m.normal
                };
                assert!(s.reading >= band.0 && s.reading <= band.1, "{kind} {s:?}");
                if s.state == "alarm" {
                    run += 1;
                } else {
                    assert!(run == 0 || run % 4 == 0, "{kind}: alarm run of {run}");
                    run = 0;
                }
            }
        }
    }
}
