//! The metadata image (immutable, shared by every request) and the store
//! that changes it. A change writes the topic record to RocksDB, then swaps
//! in a new image; readers holding the old image are unaffected.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::error::ResponseError;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use uuid::Uuid;

use crate::cluster::topic_record::TopicRecord;
use crate::config::{BrokerConfig, DYNAMIC_SETTINGS};
use crate::error::{Error, Result};
use crate::log::db::Db;
use crate::log::keys::{CF_CLUSTER, CF_TOPICS};

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic name rule: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("topic name is empty".to_owned())
    } else if name == "." || name == ".." {
        Some(format!("topic name cannot be \"{name}\""))
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        Some(format!(
            "topic name is longer than {MAX_TOPIC_NAME_LEN} characters"
        ))
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some(format!(
            "topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ))
    } else {
        None
    };
    match reason {
        Some(message) => Err(Error::api_msg(
            ResponseError::InvalidTopicException,
            message,
        )),
        None => Ok(()),
    }
}

/// What every request handler reads: the topics and cluster identity at one
/// point in time.
#[derive(Debug, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// The broker settings in force: static config with the dynamic
    /// settings applied on top.
    pub broker_config: Arc<BrokerConfig>,
    /// Settings changed at run time (cluster-wide), by name.
    pub dynamic_broker_configs: BTreeMap<String, String>,
    topics_by_name: HashMap<String, Arc<TopicRecord>>,
    topics_by_id: HashMap<Uuid, Arc<TopicRecord>>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicRecord>> {
        self.topics_by_name.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicRecord>> {
        self.topics_by_id.get(id)
    }

    /// All topics, in no particular order.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicRecord>> {
        self.topics_by_name.values()
    }

    fn with_topic(&self, record: TopicRecord) -> MetadataImage {
        let record = Arc::new(record);
        let mut by_name = self.topics_by_name.clone();
        let mut by_id = self.topics_by_id.clone();
        let _ = by_name.insert(record.name.clone(), record.clone());
        let _ = by_id.insert(record.id, record);
        MetadataImage {
            cluster_id: self.cluster_id.clone(),
            broker_config: self.broker_config.clone(),
            dynamic_broker_configs: self.dynamic_broker_configs.clone(),
            topics_by_name: by_name,
            topics_by_id: by_id,
        }
    }

    fn with_dynamic(
        &self,
        dynamic: BTreeMap<String, String>,
        effective: BrokerConfig,
    ) -> MetadataImage {
        MetadataImage {
            cluster_id: self.cluster_id.clone(),
            broker_config: Arc::new(effective),
            dynamic_broker_configs: dynamic,
            topics_by_name: self.topics_by_name.clone(),
            topics_by_id: self.topics_by_id.clone(),
        }
    }

    fn without_topic(&self, record: &TopicRecord) -> MetadataImage {
        let mut by_name = self.topics_by_name.clone();
        let mut by_id = self.topics_by_id.clone();
        let _ = by_name.remove(&record.name);
        let _ = by_id.remove(&record.id);
        MetadataImage {
            cluster_id: self.cluster_id.clone(),
            broker_config: self.broker_config.clone(),
            dynamic_broker_configs: self.dynamic_broker_configs.clone(),
            topics_by_name: by_name,
            topics_by_id: by_id,
        }
    }
}

/// Owns metadata changes on this node.
#[derive(Debug)]
pub struct MetadataStore {
    db: Arc<Db>,
    /// The config from file, environment and flags, before dynamic changes.
    static_config: Arc<BrokerConfig>,
    image: RwLock<Arc<MetadataImage>>,
    /// Serialises changes so two creates of one name cannot both succeed.
    change_lock: Mutex<()>,
}

const CLUSTER_ID_KEY: &[u8] = b"cluster.id";
/// `cluster` family keys of dynamic broker settings: this prefix + name.
const DYNAMIC_PREFIX: &str = "broker.config.";

/// Applies dynamic settings to the static config; an invalid one is an
/// INVALID_CONFIG error naming it.
fn effective_config(
    static_config: &BrokerConfig,
    dynamic: &BTreeMap<String, String>,
) -> Result<BrokerConfig> {
    let mut effective = static_config.clone();
    for (name, value) in dynamic {
        if !DYNAMIC_SETTINGS.contains(&name.as_str()) {
            return Err(Error::api_msg(
                ResponseError::InvalidRequest,
                format!("Cannot update these configs dynamically: [{name}]"),
            ));
        }
        effective
            .set(name, value)
            .map_err(|e| Error::api_msg(ResponseError::InvalidConfig, format!("{e:#}")))?;
    }
    effective
        .validate()
        .map_err(|e| Error::api_msg(ResponseError::InvalidConfig, format!("{e:#}")))?;
    Ok(effective)
}

impl MetadataStore {
    /// Loads every topic record and the cluster id (generated and stored at
    /// first start, or taken from config). Blocking.
    pub fn load(db: Arc<Db>, static_config: Arc<BrokerConfig>) -> Result<Self> {
        let configured_cluster_id = static_config.cluster_id.as_deref();
        let stored = db
            .get(CF_CLUSTER, CLUSTER_ID_KEY)?
            .and_then(|v| String::from_utf8(v).ok());
        let cluster_id = match (stored, configured_cluster_id) {
            (Some(stored), Some(configured)) if stored != configured => {
                return Err(Error::Internal(format!(
                    "data dir belongs to cluster {stored}, config says {configured}"
                )))
            }
            (Some(stored), _) => stored,
            (None, configured) => {
                let id = configured.map(str::to_owned).unwrap_or_else(new_cluster_id);
                let mut batch = WriteBatch::default();
                batch.put_cf(db.cf(CF_CLUSTER)?, CLUSTER_ID_KEY, id.as_bytes());
                db.write(batch, true)?;
                id
            }
        };
        let mut dynamic = BTreeMap::new();
        let cluster_cf = db.cf(CF_CLUSTER)?;
        let prefix = DYNAMIC_PREFIX.as_bytes();
        for item in db
            .raw()
            .iterator_cf(cluster_cf, IteratorMode::From(prefix, Direction::Forward))
        {
            let (key, value) = item?;
            let Some(name) = key.strip_prefix(prefix) else {
                break;
            };
            let _ = dynamic.insert(
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
        let effective = effective_config(&static_config, &dynamic)?;
        let mut image = MetadataImage {
            cluster_id,
            broker_config: Arc::new(effective),
            dynamic_broker_configs: dynamic,
            ..MetadataImage::default()
        };
        let cf = db.cf(CF_TOPICS)?;
        for item in db
            .raw()
            .iterator_cf(cf, IteratorMode::From(&[], Direction::Forward))
        {
            let (key, value) = item?;
            let id = Uuid::from_slice(&key).map_err(|e| Error::Internal(e.to_string()))?;
            let record = TopicRecord::decode(id, &value)
                .ok_or_else(|| Error::Internal(format!("corrupt topic record {id}")))?;
            image = image.with_topic(record);
        }
        Ok(MetadataStore {
            db,
            static_config,
            image: RwLock::new(Arc::new(image)),
            change_lock: Mutex::new(()),
        })
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, image: MetadataImage) -> Arc<MetadataImage> {
        let image = Arc::new(image);
        *self.image.write().unwrap_or_else(|p| p.into_inner()) = image.clone();
        image
    }

    fn persist(&self, record: &TopicRecord) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_TOPICS)?,
            record.id.as_bytes(),
            record.encode(),
        );
        self.db.write(batch, true)
    }

    /// Persists a new or changed topic record and publishes the image with it.
    fn store_topic(
        &self,
        current: &MetadataImage,
        record: TopicRecord,
    ) -> Result<Arc<TopicRecord>> {
        self.persist(&record)?;
        let name = record.name.clone();
        let image = self.publish(current.with_topic(record));
        image
            .topic(&name)
            .cloned()
            .ok_or_else(|| Error::Internal("stored topic missing from image".into()))
    }

    /// Creates a topic. Blocking.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicRecord>> {
        let _guard = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.image();
        if current.topic(name).is_some() {
            return Err(Error::api_msg(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        let record = TopicRecord {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            partitions,
            configs,
        };
        self.store_topic(&current, record)
    }

    /// Applies `change` to an existing topic's record and stores it.
    pub fn update_topic(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicRecord) -> Result<()>,
    ) -> Result<Arc<TopicRecord>> {
        let _guard = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.image();
        let mut record = current
            .topic(name)
            .map(|t| TopicRecord::clone(t))
            .ok_or_else(|| Error::api(ResponseError::UnknownTopicOrPartition))?;
        change(&mut record)?;
        self.store_topic(&current, record)
    }

    /// Replaces the dynamic broker settings (validated as a whole first),
    /// or only checks them. Blocking.
    pub fn set_dynamic_broker_configs(
        &self,
        dynamic: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let _guard = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let effective = effective_config(&self.static_config, &dynamic)?;
        if validate_only {
            return Ok(());
        }
        let current = self.image();
        let cf = self.db.cf(CF_CLUSTER)?;
        let mut batch = WriteBatch::default();
        for name in current.dynamic_broker_configs.keys() {
            batch.delete_cf(cf, format!("{DYNAMIC_PREFIX}{name}"));
        }
        for (name, value) in &dynamic {
            batch.put_cf(cf, format!("{DYNAMIC_PREFIX}{name}"), value.as_bytes());
        }
        self.db.write(batch, true)?;
        let _ = self.publish(current.with_dynamic(dynamic, effective));
        Ok(())
    }

    /// Removes a topic's record; the caller deletes its data. Blocking.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicRecord>> {
        let _guard = self.change_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.image();
        let record = current
            .topic(name)
            .cloned()
            .ok_or_else(|| Error::api(ResponseError::UnknownTopicOrPartition))?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.db.cf(CF_TOPICS)?, record.id.as_bytes());
        self.db.write(batch, true)?;
        let _ = self.publish(current.without_topic(&record));
        Ok(record)
    }
}

/// A cluster id in Kafka's form: 16 random bytes, URL-safe base64, no padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("metrics.cpu_load-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(validate_topic_name(bad).unwrap_err().code(), 17, "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn cluster_id_has_kafka_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }

    #[test]
    fn store_creates_updates_deletes_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let config = Arc::new(BrokerConfig::default());
        let store = MetadataStore::load(db.clone(), config.clone()).unwrap();
        let cluster_id = store.image().cluster_id.clone();
        let t = store.create_topic("a", 3, BTreeMap::new()).unwrap();
        assert_eq!(
            store
                .create_topic("a", 1, BTreeMap::new())
                .unwrap_err()
                .code(),
            36
        );
        store
            .update_topic("a", |r| {
                r.partitions = 5;
                Ok(())
            })
            .unwrap();
        let _ = store.create_topic("b", 1, BTreeMap::new()).unwrap();
        let _ = store.delete_topic("b").unwrap();
        let mut dynamic = BTreeMap::new();
        let _ = dynamic.insert("log.retention.ms".to_owned(), "1000".to_owned());
        store
            .set_dynamic_broker_configs(dynamic.clone(), false)
            .unwrap();
        let _ = dynamic.insert("num.partitions".to_owned(), "2".to_owned());
        assert_eq!(
            store
                .set_dynamic_broker_configs(dynamic, false)
                .unwrap_err()
                .code(),
            42
        );
        drop(store);
        let reloaded = MetadataStore::load(db, config).unwrap();
        let image = reloaded.image();
        assert_eq!(image.cluster_id, cluster_id);
        assert_eq!(image.topic("a").unwrap().partitions, 5);
        assert_eq!(image.topic_by_id(&t.id).unwrap().name, "a");
        assert!(image.topic("b").is_none());
        assert_eq!(image.broker_config.log_retention_ms, 1000);
        assert_eq!(image.dynamic_broker_configs.len(), 1);
    }
}
