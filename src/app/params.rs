//! The live parameter count. [`ModelConfig::param_count`] builds the model, which can take a
//! while for wide layers, so counts are computed on a helper thread (`genlab-params`), one at a
//! time, and cached by configuration: a frame only ever looks the answer up.

use std::collections::HashMap;

use crossbeam_channel::{Receiver, TryRecvError};

use crate::engine::models::ModelConfig;
use crate::engine::worker::Waker;

/// Cached answers kept before the cache is cleared.
const CACHE_MAX: usize = 256;

/// What is known about a configuration's parameter count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamCount {
    Known(usize),
    /// Being counted.
    Pending,
    /// The model cannot be built (the message says why).
    Invalid(String),
}

pub struct ParamCounter {
    cache: HashMap<String, Result<usize, String>>,
    in_flight: Option<(String, Receiver<Result<usize, String>>)>,
    waker: Waker,
}

impl ParamCounter {
    pub fn new(waker: Waker) -> Self {
        Self { cache: HashMap::new(), in_flight: None, waker }
    }

    /// The count for `cfg`, starting a count in the background when it is unknown.
    pub fn get(&mut self, cfg: &ModelConfig) -> ParamCount {
        if let Err(e) = cfg.validate() {
            return ParamCount::Invalid(e.to_string());
        }
        let key = match serde_json::to_string(cfg) {
            Ok(k) => k,
            Err(e) => return ParamCount::Invalid(e.to_string()),
        };
        self.poll();
        match self.cache.get(&key) {
            Some(Ok(n)) => ParamCount::Known(*n),
            Some(Err(e)) => ParamCount::Invalid(e.clone()),
            None => {
                if self.in_flight.is_none() {
                    self.spawn(key, cfg.clone());
                }
                ParamCount::Pending
            }
        }
    }

    fn poll(&mut self) {
        let Some((key, rx)) = &self.in_flight else { return };
        let answer = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err("counting the parameters failed".into()),
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key.clone(), answer);
        self.in_flight = None;
    }

    fn spawn(&mut self, key: String, cfg: ModelConfig) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new().name("genlab-params".into()).spawn(move || {
            let _ = tx.send(cfg.param_count().map_err(|e| e.to_string()));
            waker();
        });
        match spawned {
            Ok(_) => self.in_flight = Some((key, rx)),
            Err(e) => {
                self.cache.insert(key, Err(format!("could not count the parameters: {e}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_once_in_the_background_and_caches() {
        let mut c = ParamCounter::new(Arc::new(|| {}));
        let cfg = ModelConfig::default();
        let mut got = c.get(&cfg);
        for _ in 0..500 {
            if got != ParamCount::Pending {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            got = c.get(&cfg);
        }
        // 784-400-(20+20) encoder, 20-400-784 decoder.
        let expect = 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784;
        assert_eq!(got, ParamCount::Known(expect));
        let bad = ModelConfig { hidden: vec![0], ..ModelConfig::default() };
        assert!(matches!(c.get(&bad), ParamCount::Invalid(m) if m.contains("width 0")));
    }
}
