//! Shards together, in process: two shards on a real store, fed the way the MQTT ingest
//! feeds them (readings to their own shard, then the rule copies), checked on the bus.

use std::{sync::Arc, time::Duration};

use super::{rules::NearCache, start, Router, SensorIn, ShardMsg};
use crate::{
    config::{CorrelationConfig, StoreConfig},
    correlate::rules::tests::{city, rules, sensor},
    domain::{now_ms, GridIndex, SensorEvent, SensorState},
    store::{Opened, Store},
    telemetry::Metrics,
};

/// Two alarms in two towns (two shards): one county alert.
const OUTAGE: &str = include_str!("../../../tests/common/outage-rule.toml");

/// As the ingest does: one batch per shard, then the copies for other shards' anchors.
async fn route(router: &Router, store: &Store, readings: &[SensorEvent]) {
    let mut near = NearCache::default();
    let mut batches: Vec<Vec<SensorIn>> = (0..router.len()).map(|_| Vec::new()).collect();
    let mut echoes = Vec::new();
    for event in readings {
        let id = store.ids.next_event();
        let shard = router.shard_of(&event.grid_id);
        echoes.extend(router.sensor_echoes(id, event, shard, &mut near));
        batches[shard].push(SensorIn {
            id,
            event: event.clone(),
            ack: None,
        });
    }
    for (shard, batch) in batches.into_iter().enumerate() {
        if !batch.is_empty() {
            router
                .send_to(shard, ShardMsg::Sensors(batch))
                .await
                .unwrap();
        }
    }
    for (shard, obs) in echoes {
        router.send_to(shard, ShardMsg::Echo(obs)).await.unwrap();
    }
}

/// The county alert opens on one shard and asks the other to merge its town's alert. The
/// other shard may see that request while the reading that opens the alert is still in its
/// queue: it must handle the reading first, or the alert is never merged. Many rounds, as
/// which of two ready queues a shard reads first is left to chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_merge_is_handled_after_the_readings_queued_before_it() {
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let store_cfg = StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..StoreConfig::default()
        };
        let Opened { store, writer } = Store::open(&store_cfg, metrics.clone(), None).unwrap();
        let cfg = CorrelationConfig {
            shards: 2,
            ..CorrelationConfig::default()
        };
        let grids = Arc::new(GridIndex::new(&city()));
        let (router, tasks) = start(&cfg, &rules(OUTAGE), grids, store.clone(), metrics)
            .await
            .unwrap();
        assert_ne!(router.shard_of("a00"), router.shard_of("b00"), "two shards");
        let mut bus = store.subscribe();
        let now = now_ms();
        route(
            &router,
            &store,
            &[
                sensor("pw-a", "mains_power", "a00", SensorState::Alarm, now),
                sensor("pw-b", "mains_power", "b00", SensorState::Alarm, now),
            ],
        )
        .await;
        let (mut county, mut merged) = (None::<String>, Vec::<(String, String)>::new());
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while merged.len() < 2 {
                let change = bus.recv().await.unwrap();
                let a = change.alert.as_ref().unwrap();
                if a.rule_id == "power-outage" {
                    county = Some(a.id.clone());
                }
                if !a.merged_into.is_empty() {
                    merged.push((a.dedup_key.clone(), a.merged_into.clone()));
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "round {round}: both town alerts merged into the county one; merged {merged:?}"
        );
        let county = county.expect("the county alert");
        merged.sort();
        assert_eq!(
            merged,
            [
                ("sensor/pw-a/mains_power".to_string(), county.clone()),
                ("sensor/pw-b/mains_power".to_string(), county)
            ],
            "round {round}"
        );
        drop(router);
        for t in tasks {
            t.await.unwrap();
        }
        drop(store);
        writer.join().unwrap();
    }
}
