//! Partition groups: the ETL's unit of parallel work. Readings are keyed by patient, so each patient's
//! readings all arrive on one Kafka partition, and micro-batches over different partitions share no
//! patient. The partitions are dealt into `etl.partition_groups` groups (partition modulo the count);
//! each group runs its own micro-batches, one at a time, beside the others, with its own position in
//! the checkpoint, its own Delta transactions and its own part of the ETL state and `patient_latest`.

use vitalflow_udf_model::lake::names::{etl_group_app_id, partition_of_file};

/// One group of partitions of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionGroup {
    /// Its number, from 0.
    pub index: usize,
    /// How many groups there are.
    pub count: usize,
}

impl PartitionGroup {
    /// The `count` groups.
    pub fn all(count: usize) -> impl Iterator<Item = PartitionGroup> {
        let count = count.max(1);
        (0..count).map(move |index| PartitionGroup { index, count })
    }

    /// The partition a landed `vitals_raw` file holds, from its name; a file whose name does not say
    /// (none of ingest's) counts as partition 0's, so that it has one group whatever the count.
    pub fn partition_of(file: &str) -> i32 {
        partition_of_file(file).unwrap_or(0)
    }

    /// Whether `partition` belongs to this group.
    pub fn holds(&self, partition: i32) -> bool {
        partition.rem_euclid(self.count.max(1) as i32) as usize == self.index
    }

    /// Application id of its transactions in the output tables.
    pub fn app_id(&self) -> String {
        etl_group_app_id(self.index, self.count)
    }

    /// How the names of its files in the replaced tables (the state, `patient_latest`) begin: its part
    /// of them. One group owns the whole tables.
    pub fn file_part(&self) -> String {
        if self.count <= 1 { String::new() } else { format!("group-{}-of-{}-", self.index, self.count) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_group() {
        for count in 1..5 {
            for partition in 0..12 {
                let holders = PartitionGroup::all(count).filter(|g| g.holds(partition)).count();
                assert_eq!(holders, 1, "partition {partition} of {count} groups");
            }
        }
        assert_eq!(PartitionGroup::partition_of("vitals-p5-00000000000000000001-00000000000000000009-ab.parquet"), 5);
        assert_eq!(PartitionGroup::partition_of("migrated-ab.parquet"), 0);
        let groups: Vec<_> = PartitionGroup::all(2).map(|g| g.file_part()).collect();
        assert_eq!(groups, ["group-0-of-2-", "group-1-of-2-"]);
        assert_eq!(PartitionGroup::all(1).next().map(|g| g.file_part()), Some(String::new()));
    }
}
