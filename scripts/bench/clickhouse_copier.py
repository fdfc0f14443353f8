"""The reference for `warren bench reshard`: ClickHouse's own resharding
tool, clickhouse-copier (Debian's clickhouse-tools 18.16), copying the same
events table from one layout to another.

Usage: clickhouse_copier.py SOURCE_URL TARGET_URL ZOOKEEPER
  SOURCE_URL, TARGET_URL  clickhouse://host:port,…/database?cluster=name
                          (the target's database is made for this run and
                          dropped at the end)
  ZOOKEEPER               host:port of the target's ZooKeeper, where the
                          copier keeps its task

Prints one line: rows copied, seconds, rows per second. The copier needs a
hand-written task description in ZooKeeper (uploaded here with kazoo) and
verifies nothing; this script counts the rows it left.
"""

import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from kazoo.client import KazooClient

COPIER = "/usr/bin/clickhouse-copier"


def parse(url):
    rest = url.split("://", 1)[1]
    rest, query = rest.split("?", 1)
    hosts, database = rest.split("/", 1)
    cluster = urllib.parse.parse_qs(query)["cluster"][0]
    return [f"http://{h}" for h in hosts.split(",")], database, cluster


def ask(host, sql):
    request = urllib.request.Request(host + "/", data=sql.encode())
    with urllib.request.urlopen(request, timeout=600) as answer:
        return answer.read().decode().strip()


def servers(host, cluster):
    """<shard> elements of the cluster as its servers know it."""
    rows = ask(host, f"SELECT shard_num, host_name, port FROM system.clusters WHERE cluster = '{cluster}' "
                     "ORDER BY shard_num, replica_num FORMAT TSV")
    shards = {}
    for line in rows.splitlines():
        shard, name, port = line.split("\t")
        shards.setdefault(shard, []).append(f"<replica><host>{name}</host><port>{port}</port></replica>")
    return "".join(f"<shard><internal_replication>true</internal_replication>{''.join(r)}</shard>"
                   for r in shards.values())


def main():
    (source_hosts, source_db, source_cluster), (target_hosts, target_db, target_cluster) = (
        parse(sys.argv[1]), parse(sys.argv[2]))
    zookeeper = sys.argv[3]
    target_db = f"{target_db}_copier_{int(time.time())}"
    for host in target_hosts:
        ask(host, f"CREATE DATABASE IF NOT EXISTS {target_db}")
    engine = (f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{target_db}.sharded_events', "
              "'{replica}', inserted_at_us) PARTITION BY toYYYYMM(timestamp) "
              "ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid))) "
              "SAMPLE BY cityHash64(distinct_id)")
    task = f"""<yandex>
  <remote_servers>
    <source>{servers(source_hosts[0], source_cluster)}</source>
    <destination>{servers(target_hosts[0], target_cluster)}</destination>
  </remote_servers>
  <max_workers>2</max_workers>
  <settings_pull><readonly>1</readonly></settings_pull>
  <settings_push><readonly>0</readonly></settings_push>
  <settings><connect_timeout>3</connect_timeout><insert_distributed_sync>1</insert_distributed_sync></settings>
  <tables>
    <events>
      <cluster_pull>source</cluster_pull><database_pull>{source_db}</database_pull><table_pull>sharded_events</table_pull>
      <cluster_push>destination</cluster_push><database_push>{target_db}</database_push><table_push>sharded_events</table_push>
      <engine>{engine}</engine>
      <sharding_key>sipHash64(distinct_id)</sharding_key>
    </events>
  </tables>
</yandex>"""
    path = f"/warren-bench/copier/{target_db}"
    keeper = KazooClient(hosts=zookeeper)
    keeper.start()
    keeper.ensure_path(path)
    keeper.create(f"{path}/description", task.encode())
    keeper.stop()
    host, port = zookeeper.rsplit(":", 1)
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "zookeeper.xml"
        config.write_text(f"<yandex><logger><level>warning</level><console>1</console></logger>"
                          f"<zookeeper><node><host>{host}</host><port>{port}</port></node></zookeeper></yandex>")
        started = time.monotonic()
        done = subprocess.run([COPIER, "--config-file", str(config), "--task-path", path, "--base-dir", work],
                              capture_output=True, text=True)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            print(done.stdout[-4000:], done.stderr[-4000:], file=sys.stderr)
            sys.exit(f"clickhouse-copier exited {done.returncode}")
    # One server per shard, by its shard macro.
    rows, counted = 0, set()
    for host in target_hosts:
        shard = ask(host, "SELECT substitution FROM system.macros WHERE macro = 'shard'")
        if shard not in counted:
            counted.add(shard)
            rows += int(ask(host, f"SELECT count() FROM {target_db}.sharded_events FINAL"))
    for host in target_hosts:
        ask(host, f"DROP DATABASE IF EXISTS {target_db}")
    print(f"clickhouse-copier: {rows} rows in {seconds:.1f} s = {rows / seconds:.0f} rows/s (no verification)")


main()
