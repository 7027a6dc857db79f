//! The names of the lake's things: data-file prefixes (a data file's name says what it holds; a unique
//! suffix is added when it is written), the application ids of the Delta transactions (`txn`) that
//! make each writer exactly once, and the checkpoints' object paths.

/// The Delta table of the ETL's per-patient state (each patient's last readings, carried between
/// micro-batches), relative to the data location; not a SQL table.
pub const ETL_STATE_TABLE: &str = "_etl_state";

/// Object path of the ETL checkpoint, relative to the data location.
pub const ETL_CHECKPOINT: &str = "_checkpoints/etl.json";

/// Object path of an alert sink's checkpoint, relative to the data location.
pub fn alert_sink_checkpoint(sink: &str) -> String {
    format!("_checkpoints/alerts-{sink}.json")
}

/// The stage name ingest writes into `dead_letters.stage`.
pub const INGEST_STAGE: &str = "ingest";

/// Prefix of the data file of a partition's offset range.
pub fn range_prefix(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}-p{partition}-{first:020}-{last:020}")
}

/// The Kafka partition a landed data file holds, from its name (`…-p<partition>-…`, as
/// [`range_prefix`] writes it); `None` for a name that does not say.
pub fn partition_of_file(name: &str) -> Option<i32> {
    let name = name.rsplit('/').next().unwrap_or(name);
    // The last `-p<digits>` followed by `-`: a topic name may itself hold such a part, the ranges after it cannot.
    name.rmatch_indices("-p").find_map(|(at, _)| {
        let rest = &name[at + 2..];
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        (digits > 0 && rest[digits..].starts_with('-')).then(|| rest[..digits].parse().ok()).flatten()
    })
}

/// Prefix of an ETL micro-batch's data file.
pub fn batch_prefix(batch_id: i64) -> String {
    format!("batch-{batch_id:012}")
}

/// Where ingest's offsets come from: a Kafka cluster (by its cluster id) and a topic. Offsets of
/// another cluster or of a recreated topic are another source: its positions start fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSource {
    /// The cluster id the brokers report.
    pub cluster_id: String,
    /// The topic name.
    pub topic: String,
    /// The topic's id when the brokers report one (Kafka ≥ 2.8), else empty.
    pub topic_id: String,
}

impl KafkaSource {
    /// Application id of the Delta transactions ingest commits for `partition`: their version is the
    /// last offset of that partition landed in the table.
    pub fn app_id(&self, partition: i32) -> String {
        let KafkaSource { cluster_id, topic, topic_id } = self;
        if topic_id.is_empty() {
            format!("vitalflow-ingest/{cluster_id}/{topic}/{partition}")
        } else {
            format!("vitalflow-ingest/{cluster_id}/{topic}:{topic_id}/{partition}")
        }
    }
}

/// Application id of the ETL's transactions in each output table: their version is the micro-batch id.
pub const ETL_APP_ID: &str = "vitalflow-etl";

/// Application id of the transactions of partition group `group` of `groups` (see the ETL driver): each
/// group's batches commit on their own, so each has its own. One group keeps [`ETL_APP_ID`].
pub fn etl_group_app_id(group: usize, groups: usize) -> String {
    if groups <= 1 { ETL_APP_ID.to_string() } else { format!("{ETL_APP_ID}/group-{group}-of-{groups}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_ids_name_the_cluster_and_topic() {
        let source = KafkaSource { cluster_id: "abc".into(), topic: "vitals".into(), topic_id: String::new() };
        assert_eq!(source.app_id(2), "vitalflow-ingest/abc/vitals/2");
        let with_id = KafkaSource { topic_id: "T1".into(), ..source.clone() };
        assert_ne!(with_id.app_id(2), source.app_id(2));
        let other_cluster = KafkaSource { cluster_id: "xyz".into(), ..source.clone() };
        assert_ne!(other_cluster.app_id(2), source.app_id(2));
    }

    #[test]
    fn prefixes_state_what_a_file_holds() {
        assert_eq!(range_prefix("raw", 2, 100, 199), "raw-p2-00000000000000000100-00000000000000000199");
        assert_eq!(batch_prefix(7), "batch-000000000007");
    }

    #[test]
    fn a_landed_file_names_its_partition() {
        let file = format!("{}-0123456789abcdef0123456789abcdef.parquet", range_prefix("icu-p9-vitals", 2, 100, 199));
        assert_eq!(partition_of_file(&file), Some(2));
        assert_eq!(partition_of_file(&format!("vitals_raw/{file}")), Some(2));
        assert_eq!(partition_of_file("bench-p0-0123456789abcdef.parquet"), Some(0));
        assert_eq!(partition_of_file("migrated-0123456789abcdef.parquet"), None);
        assert_eq!(partition_of_file("batch-000000000007-0123.parquet"), None);
    }

    #[test]
    fn each_partition_group_commits_as_its_own_application() {
        assert_eq!(etl_group_app_id(0, 1), ETL_APP_ID);
        assert_ne!(etl_group_app_id(0, 2), etl_group_app_id(1, 2));
        assert_ne!(etl_group_app_id(0, 2), etl_group_app_id(0, 3));
    }
}
