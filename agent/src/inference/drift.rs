//! Input drift: the bins the last N scored records fell in, per raw field, and their
//! population stability index against the training distribution the bundle carries.

use std::sync::Mutex;

use readmit_ml::pipeline::Source;
use readmit_ml::record::RawRecord;
use readmit_ml::reference::{FieldReference, Reference};

struct Field {
    source: Source,
    reference: FieldReference,
}

/// The last `capacity` records' bins, as a ring, and the running count of each bin.
struct Window {
    /// One entry per remembered record: its bin in each field, in field order.
    ring: Vec<Vec<u16>>,
    next: usize,
    counts: Vec<Vec<u64>>,
}

pub struct Drift {
    fields: Vec<Field>,
    capacity: usize,
    window: Mutex<Window>,
}

impl Drift {
    pub fn new(reference: &Reference, sources: &[Source], capacity: usize) -> Self {
        let fields: Vec<Field> = sources
            .iter()
            .filter_map(|&source| {
                Some(Field {
                    source,
                    reference: reference.field(source.name())?.clone(),
                })
            })
            .collect();
        let counts = fields
            .iter()
            .map(|f| vec![0; f.reference.shares.len()])
            .collect();
        Self {
            fields,
            capacity: capacity.max(1),
            window: Mutex::new(Window {
                ring: Vec::new(),
                next: 0,
                counts,
            }),
        }
    }

    /// Remembers the records' bins, forgetting the oldest beyond the window.
    pub fn observe(&self, records: &[RawRecord]) {
        if self.fields.is_empty() {
            return;
        }
        // Bin outside the lock; only the counting is shared.
        let binned: Vec<Vec<u16>> = records
            .iter()
            .map(|r| {
                self.fields
                    .iter()
                    .map(|f| u16::try_from(f.reference.bin_of(f.source.cell(r))).unwrap_or(0))
                    .collect()
            })
            .collect();
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for bins in binned {
            for (field, &bin) in bins.iter().enumerate() {
                w.counts[field][usize::from(bin)] += 1;
            }
            if w.ring.len() < self.capacity {
                w.ring.push(bins);
            } else {
                let at = w.next;
                let old = std::mem::replace(&mut w.ring[at], bins);
                for (field, &bin) in old.iter().enumerate() {
                    w.counts[field][usize::from(bin)] -= 1;
                }
                w.next = (at + 1) % self.capacity;
            }
        }
    }

    /// Records in the window now.
    pub fn records(&self) -> usize {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ring
            .len()
    }

    /// Each field's PSI over the window; empty before any record was scored.
    pub fn psi(&self) -> Vec<(&'static str, f64)> {
        let w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.fields
            .iter()
            .zip(&w.counts)
            .filter_map(|(f, counts)| Some((f.source.name(), f.reference.psi(counts)?)))
            .collect()
    }
}
