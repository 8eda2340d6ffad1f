//! Where the app's [`Command`]s go and its [`Event`]s come from: the training worker, or, in UI
//! tests, a [`Recorder`] that keeps what was sent and hands back the events a test queued. The
//! app folds both through the same drain, so a test drives exactly what a real run drives.

use std::collections::VecDeque;

use crate::engine::protocol::{Command, Event};
use crate::engine::worker::{SendError, Worker};

/// The other end of the app's commands.
pub enum CommandSink {
    /// The training thread (what users get).
    Worker(Worker),
    /// No thread: commands are recorded, events are canned (UI tests).
    Recorder(Recorder),
}

/// Commands sent and events to deliver, for tests that check what a click asked of the worker
/// and put the app into a state without training anything.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Every command sent and not yet taken, oldest first.
    pub sent: Vec<Command>,
    /// Events the next frame folds in, oldest first.
    pub events: VecDeque<Event>,
}

impl Recorder {
    /// The commands sent since the last call.
    pub fn take_sent(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.sent)
    }

    /// Queues `events` for the next frame, as if the worker had sent them.
    pub fn feed(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
    }
}

impl CommandSink {
    /// Queues a command without waiting; a full queue or a finished worker hands it back (a
    /// recorder takes everything).
    pub fn try_send(&mut self, cmd: Command) -> Result<(), SendError> {
        match self {
            CommandSink::Worker(w) => w.try_send(cmd),
            CommandSink::Recorder(r) => {
                r.sent.push(cmd);
                Ok(())
            }
        }
    }

    /// The events that have arrived, without waiting.
    pub fn try_events(&mut self) -> Vec<Event> {
        match self {
            CommandSink::Worker(w) => w.try_events(),
            CommandSink::Recorder(r) => r.events.drain(..).collect(),
        }
    }
}
