//! The metadata log's state machine: applies committed records to the
//! [`MetadataImage`] and publishes every new image on a watch channel, which
//! request handlers read and the replica manager reconciles against.
//!
//! The image lives in memory. Snapshots (the image's [`ImageData`] with the
//! Raft position it covers) are kept in `controller_state` so a restart, or a
//! follower too far behind, starts from the snapshot and replays the log
//! after it.

// openraft's traits fix the error types (StorageError, RPCError), which
// are large; boxing them is not ours to choose.
#![allow(clippy::result_large_err)]
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::controller::TypeConfig;
use crate::cluster::metadata::{ImageData, MetadataImage};
use crate::cluster::records::ControllerReply;
use crate::config::BrokerConfig;
use crate::log::db::Db;
use crate::log::keys::CF_CONTROLLER_STATE;

type NodeId = u64;

const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// A snapshot as stored: its Raft metadata and the bincode image data.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

fn sm_error(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snapshot_error(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

/// The applied metadata and who is told about it.
#[derive(Debug)]
pub struct StateMachine {
    db: Arc<Db>,
    static_config: Arc<BrokerConfig>,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    publisher: watch::Sender<Arc<MetadataImage>>,
}

impl StateMachine {
    /// Starts from the stored snapshot, if any. Blocking (reads RocksDB).
    pub fn load(
        db: Arc<Db>,
        static_config: Arc<BrokerConfig>,
        publisher: watch::Sender<Arc<MetadataImage>>,
    ) -> Result<Self, StorageError<NodeId>> {
        let mut machine = StateMachine {
            image: MetadataImage::empty(static_config.clone()),
            db,
            static_config,
            last_applied: None,
            membership: StoredMembership::default(),
            publisher,
        };
        if let Some(stored) = machine.read_snapshot()? {
            machine.restore(&stored)?;
        }
        Ok(machine)
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        self.db
            .get(CF_CONTROLLER_STATE, SNAPSHOT_KEY)
            .map_err(snapshot_error)?
            .map(|bytes| bincode::deserialize(&bytes).map_err(snapshot_error))
            .transpose()
    }

    fn restore(&mut self, stored: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let data = ImageData::decode(&stored.data).map_err(snapshot_error)?;
        let index = stored.meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.image = MetadataImage::from_data(data, &self.static_config, index);
        self.last_applied = stored.meta.last_log_id;
        self.membership = stored.meta.last_membership.clone();
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let _ = self.publisher.send_replace(Arc::new(self.image.clone()));
    }
}

/// Builds a snapshot of the image as it was when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    db: Arc<Db>,
    data: ImageData,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = bincode::serialize(&self.data).map_err(sm_error)?;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}", l.leader_id.term, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let db = self.db.clone();
        let bytes = bincode::serialize(&stored).map_err(sm_error)?;
        tokio::task::spawn_blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(
                db.cf(CF_CONTROLLER_STATE).map_err(sm_error)?,
                SNAPSHOT_KEY,
                bytes,
            );
            db.write(batch, true).map_err(sm_error)
        })
        .await
        .map_err(sm_error)??;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ControllerReply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            let reply = match entry.payload {
                EntryPayload::Blank => {
                    self.image.applied_index = index;
                    ControllerReply {
                        applied_index: index,
                        ..ControllerReply::ok()
                    }
                }
                EntryPayload::Normal(record) => {
                    let reply = self.image.apply(&record, index, &self.static_config);
                    if reply.error_code != 0 {
                        tracing::debug!(index, error_code = reply.error_code,
                            message = ?reply.message, "metadata record refused");
                    }
                    reply
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    self.image.applied_index = index;
                    ControllerReply {
                        applied_index: index,
                        ..ControllerReply::ok()
                    }
                }
            };
            replies.push(reply);
        }
        self.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            data: self.image.to_data(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let bytes = bincode::serialize(&stored).map_err(sm_error)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(
                db.cf(CF_CONTROLLER_STATE).map_err(sm_error)?,
                SNAPSHOT_KEY,
                bytes,
            );
            db.write(batch, true).map_err(sm_error)
        })
        .await
        .map_err(sm_error)??;
        self.restore(&stored)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = self.db.clone();
        let stored = tokio::task::spawn_blocking(move || {
            db.get(CF_CONTROLLER_STATE, SNAPSHOT_KEY)
                .map_err(snapshot_error)
        })
        .await
        .map_err(snapshot_error)??;
        let Some(bytes) = stored else {
            return Ok(None);
        };
        let stored: StoredSnapshot = bincode::deserialize(&bytes).map_err(snapshot_error)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
