//! The toxic chain of one link direction as a pure state machine: items enter at the first stage, move stage
//! to stage as each toxic allows, and leave through an output queue that the link writes to the destination.
//!
//! Nothing here does I/O or sleeps, so the link driving it can take a toxic change at any moment: the API only
//! publishes a new [`Chain`] and the link applies it with [`Pipeline::reconfigure`] between two events, keeping
//! every queued byte in order. That is why the admin API never waits on a stuck data path.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::rngs::StdRng;
use tokio::time::Instant;

use crate::toxics::{Behaviour, Build, Close, Item, Passthrough, Step, ToxicKind, roll};

/// One toxic as the links of one direction see it.
#[derive(Clone, Debug)]
pub(crate) struct ToxicSpec {
    /// Unique for the life of the server; a toxic deleted and re-created under the same name gets a new id.
    pub id: u64,
    /// Bumped on every update, so links know to take the new attributes and roll toxicity again.
    pub revision: u64,
    pub name: Arc<str>,
    pub kind: ToxicKind,
    pub toxicity: f32,
}

/// The toxics of one direction of a proxy, in order; published to every live link through a watch channel.
pub(crate) type Chain = Arc<Vec<ToxicSpec>>;

/// Items the output may hold before the last stage is held back.
const OUTPUT_CAPACITY: usize = 1;

struct Stage {
    id: u64,
    revision: u64,
    /// Whether this link's toxicity roll selected the toxic; when false it behaves as `noop`.
    active: bool,
    /// Set once the stage emitted the end of stream; it drops whatever still reaches it.
    done: bool,
    queue: VecDeque<Item>,
    behaviour: Box<dyn Behaviour>,
}

impl Stage {
    fn new(spec: &ToxicSpec, now: Instant, rng: &mut StdRng) -> Stage {
        let active = roll(spec.toxicity, rng);
        let behaviour: Box<dyn Behaviour> =
            if active { spec.kind.behaviour(now) } else { Box::new(Passthrough) };
        Stage { id: spec.id, revision: spec.revision, active, done: false, queue: VecDeque::new(), behaviour }
    }

    fn has_room(&self) -> bool {
        self.queue.len() < self.behaviour.capacity()
    }

    fn poll(&mut self, now: Instant, rng: &mut StdRng, room: bool) -> Step {
        if self.done {
            self.queue.clear();
            return Step::Idle;
        }
        if !room {
            return self.behaviour.poll_blocked(now);
        }
        let step = self.behaviour.poll(&mut self.queue, now, rng);
        if step == Step::Emit(Item::Eof) {
            self.done = true;
        }
        step
    }
}

/// The chain of one link direction plus its output queue.
pub(crate) struct Pipeline {
    stages: Vec<Stage>,
    /// Items ready for the destination, oldest first.
    out: VecDeque<Item>,
    rng: StdRng,
}

/// Names of toxics that a (re)configuration activated on this link, for the activation counters.
pub(crate) type Activated = Vec<Arc<str>>;

impl Pipeline {
    pub fn new(chain: &Chain, now: Instant, mut rng: StdRng) -> (Pipeline, Activated) {
        let mut activated = Vec::new();
        let stages = chain
            .iter()
            .map(|spec| {
                let stage = Stage::new(spec, now, &mut rng);
                if stage.active {
                    activated.push(spec.name.clone());
                }
                stage
            })
            .collect();
        (Pipeline { stages, out: VecDeque::new(), rng }, activated)
    }

    /// Whether the first stage (or the output, with no toxics) can take another item.
    pub fn accepts_input(&self) -> bool {
        match self.stages.first() {
            Some(stage) => stage.has_room(),
            None => self.out.len() < OUTPUT_CAPACITY,
        }
    }

    /// No toxic and nothing queued: bytes may bypass the pipeline.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty() && self.out.is_empty()
    }

    pub fn push(&mut self, item: Item) {
        match self.stages.first_mut() {
            Some(stage) => stage.queue.push_back(item),
            None => self.out.push_back(item),
        }
    }

    pub fn front(&self) -> Option<&Item> {
        self.out.front()
    }

    pub fn front_mut(&mut self) -> Option<&mut Item> {
        self.out.front_mut()
    }

    pub fn pop_front(&mut self) -> Option<Item> {
        self.out.pop_front()
    }

    /// Moves items through the stages as far as they may go at `now`. Returns when the pipeline next needs
    /// attention without new input (a toxic's deadline), or the close a toxic asked for.
    pub fn pump(&mut self, now: Instant) -> Result<Option<Instant>, Close> {
        loop {
            let mut progressed = false;
            let mut wake: Option<Instant> = None;
            for i in 0..self.stages.len() {
                let (head, tail) = self.stages.split_at_mut(i + 1);
                let stage = &mut head[i];
                loop {
                    let room = match tail.first() {
                        Some(next) => next.has_room(),
                        None => self.out.len() < OUTPUT_CAPACITY,
                    };
                    match stage.poll(now, &mut self.rng, room) {
                        Step::Emit(item) => {
                            match tail.first_mut() {
                                Some(next) => next.queue.push_back(item),
                                None => self.out.push_back(item),
                            }
                            progressed = true;
                        }
                        Step::Wait(at) => {
                            wake = Some(wake.map_or(at, |w| w.min(at)));
                            break;
                        }
                        Step::Idle => break,
                        Step::Close(close) => return Err(close),
                    }
                    if !room {
                        break;
                    }
                }
            }
            if !progressed {
                return Ok(wake);
            }
        }
    }

    /// Applies a new chain to this live link without losing, duplicating or reordering a byte: kept toxics
    /// keep their queues and state, updated ones take the new attributes and roll toxicity again, removed
    /// ones hand their queued items to the next stage, new ones start empty.
    pub fn reconfigure(&mut self, chain: &Chain, now: Instant) -> (Option<Close>, Activated) {
        let mut activated = Vec::new();
        let mut close = None;
        let mut old: VecDeque<Stage> = std::mem::take(&mut self.stages).into();
        let mut kept: Vec<Stage> = Vec::with_capacity(chain.len());
        // Items of removed stages, older (further downstream) first, waiting for the next surviving stage.
        let mut carry: VecDeque<Item> = VecDeque::new();
        while let Some(mut stage) = old.pop_front() {
            match chain.iter().find(|spec| spec.id == stage.id) {
                None => {
                    if stage.active && close.is_none() {
                        close = stage.behaviour.on_remove();
                    }
                    // This stage's items are newer than anything downstream of it, older than anything upstream.
                    let mut items = std::mem::take(&mut stage.queue);
                    items.append(&mut carry);
                    carry = items;
                }
                Some(spec) => {
                    // Items handed over from a removed upstream neighbour are newer than this stage's own.
                    let handed = std::mem::take(&mut carry);
                    if spec.revision != stage.revision {
                        stage.revision = spec.revision;
                        let was_active = stage.active;
                        stage.active = roll(spec.toxicity, &mut self.rng);
                        let same_kind = was_active && stage.active && stage.behaviour.update(&spec.kind);
                        if !same_kind {
                            stage.behaviour =
                                if stage.active { spec.kind.behaviour(now) } else { Box::new(Passthrough) };
                        }
                        if stage.active {
                            activated.push(spec.name.clone());
                        }
                    }
                    kept.push(stage);
                    if !handed.is_empty() {
                        // The handed items belong *before* this stage: they have not passed through it yet.
                        if let Some(stage) = kept.last_mut() {
                            stage.queue.extend(handed);
                        }
                    }
                }
            }
        }
        self.out.extend(carry);
        // Order the kept stages as the chain does and add new ones (empty) where the chain puts them.
        let mut stages = Vec::with_capacity(chain.len());
        for spec in chain.iter() {
            match kept.iter().position(|s| s.id == spec.id) {
                Some(pos) => stages.push(kept.remove(pos)),
                None => {
                    let stage = Stage::new(spec, now, &mut self.rng);
                    if stage.active {
                        activated.push(spec.name.clone());
                    }
                    stages.push(stage);
                }
            }
        }
        self.stages = stages;
        (close, activated)
    }
}
