//! The worker's outbox: events waiting to go out, per-step metrics batched, stale images
//! coalesced, sent without ever blocking on the consumer.

use super::*;

impl Outbox {
    pub(super) fn push(&mut self, ev: Event) {
        self.flush_metrics();
        // Keep only the newest of each replaceable image event while the consumer lags.
        if self.queue.len() > EVENT_CAPACITY {
            let replaceable = |e: &Event| {
                matches!(e, Event::FixedNoise { .. } | Event::ClassGrid { .. } | Event::Samples { .. })
            };
            if replaceable(&ev) {
                if let Some(pos) =
                    self.queue.iter().position(|e| std::mem::discriminant(e) == std::mem::discriminant(&ev))
                {
                    self.queue.remove(pos);
                }
            }
        }
        if let Event::Decoded { channel, .. } = &ev {
            let ch = *channel;
            self.queue.retain(|e| !matches!(e, Event::Decoded { channel: c, .. } if *c == ch));
        }
        self.queue.push_back(ev);
    }

    pub(super) fn push_metrics(&mut self, run: u64, m: StepMetrics) {
        if self.metrics_run != run {
            self.flush_metrics();
            self.metrics_run = run;
        }
        self.metrics.push(m);
    }

    pub(super) fn flush_metrics(&mut self) {
        if !self.metrics.is_empty() {
            let steps = std::mem::take(&mut self.metrics);
            // Merge into a metrics batch still waiting at the back of the queue.
            if let Some(Event::Metrics { run, steps: prev }) = self.queue.back_mut() {
                if *run == self.metrics_run {
                    prev.extend(steps);
                    self.last_metrics = Instant::now();
                    return;
                }
            }
            self.queue.push_back(Event::Metrics { run: self.metrics_run, steps });
            self.last_metrics = Instant::now();
        }
    }

    /// Sends what fits; returns `false` if the consumer is gone.
    pub(super) fn send(&mut self, tx: &Sender<Event>, waker: &Waker) -> bool {
        if self.last_metrics.elapsed() >= METRICS_INTERVAL {
            self.flush_metrics();
        }
        let mut sent = false;
        while let Some(ev) = self.queue.pop_front() {
            match tx.try_send(ev) {
                Ok(()) => sent = true,
                Err(TrySendError::Full(ev)) => {
                    self.queue.push_front(ev);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        if sent {
            waker();
        }
        true
    }
}
