//! Producer ids for idempotent producers, handed out from blocks.
//!
//! As in Kafka, the controller allocates blocks of 1000 ids through the
//! metadata log (`AllocateProducerIds`), so an id is never given out twice,
//! by any node, even across restarts and controller changes. A node hands
//! out ids from its current block and asks for the next when it runs out;
//! what is left of a block at a restart is skipped.

use std::sync::{Arc, Mutex};

use crate::cluster::store::MetadataStore;
use crate::error::Result;

/// Ids per block, as in Kafka (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const BLOCK_SIZE: i64 = 1000;

/// The ids of the current block still to hand out: `next..end`.
#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

/// Hands out producer ids.
#[derive(Debug)]
pub struct ProducerIdManager {
    metadata: Arc<MetadataStore>,
    block: Mutex<Block>,
}

impl ProducerIdManager {
    pub fn new(metadata: Arc<MetadataStore>) -> Self {
        ProducerIdManager {
            metadata,
            block: Mutex::new(Block::default()),
        }
    }

    fn take(&self) -> Option<i64> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        (block.next < block.end).then(|| {
            block.next += 1;
            block.next - 1
        })
    }

    /// A producer id never handed out before.
    pub async fn generate_async(self: &Arc<Self>) -> Result<i64> {
        loop {
            if let Some(id) = self.take() {
                return Ok(id);
            }
            // Not under the lock: the allocation is a round trip to the
            // controller. Two callers may both allocate; one block is then
            // dropped, which wastes ids but never reuses one.
            let first = self.metadata.allocate_producer_ids(BLOCK_SIZE).await?;
            let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
            if block.next >= block.end {
                *block = Block {
                    next: first,
                    end: first + BLOCK_SIZE,
                };
            }
        }
    }
}
