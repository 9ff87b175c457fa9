"""An in-process fake of the Cloud Datastore v1 gRPC API, for tests.

The gcloud Datastore emulator cannot be installed on CI, so tests point the
real ``google-cloud-datastore`` client (gRPC transport) at this server via
``DATASTORE_EMULATOR_HOST``.  Messages are (de)serialised with the client
library's own proto-plus types, so what crosses the socket is the real wire
format, and what tests read back is exactly what the client wrote.

    server = DatastoreTestServer(); server.start()
    monkeypatch.setenv("DATASTORE_EMULATOR_HOST", server.address)
    client = datastore.Client(project="test-project")  # no credentials=!

Supported: Lookup, RunQuery (kind, namespace, EQUAL/!=/IN/NOT_IN/<,<=,>,>=
filters, AND/OR, HAS_ANCESTOR, ``__key__`` filters, limit, offset, start
cursors, keys-only projection; results in key order), Commit
(insert/update/upsert/delete, atomic, id allocation, base_version),
BeginTransaction/Rollback (optimistic: commit fails with ABORTED if anything
the transaction read has changed), AllocateIds, ReserveIds.

Not supported, answered UNIMPLEMENTED rather than guessed: GQL, aggregation
queries, ordering other than ascending ``__key__``, property projections,
distinct_on, property masks and transforms, explain.  Silently simplified:
every read sees the latest data (read_time and eventual consistency are
ignored), no index or size limits, nothing is ever ``deferred``.

Fault injection (``fail_with``, ``hang``, ``heal``) and per-method call
counts (``calls``) are for resilience tests.  Importing this module has no
side effects; nothing listens until ``start()``.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import threading
from concurrent import futures

import grpc
from google.cloud.datastore_v1.types import datastore as ds
from google.cloud.datastore_v1.types import entity as ent
from google.cloud.datastore_v1.types import query as qry
from google.protobuf import timestamp_pb2

SERVICE = "google.datastore.v1.Datastore"

Op = qry.PropertyFilter.Operator
CompOp = qry.CompositeFilter.Operator
Mode = ds.CommitRequest.Mode
MoreResults = qry.QueryResultBatch.MoreResultsType

# The server works on the raw protobuf messages behind the proto-plus
# wrappers: they expose WhichOneof/HasField/CopyFrom, which proto-plus hides.
_KeyPb = ent.Key.pb()
_EntityPb = ent.Entity.pb()
_ValuePb = ent.Value.pb()

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class _RpcError(Exception):
    """Raised inside a handler; turned into a gRPC status by the dispatcher."""

    def __init__(self, code, details):
        super().__init__(details)
        self.code, self.details = code, details


class _Fault:
    def __init__(self, kind, methods, times, code=None, details=None, seconds=None):
        self.kind, self.methods, self.times = kind, methods, times
        self.code, self.details, self.seconds = code, details, seconds
        # Each hang gets its own event so heal() releases exactly the calls
        # parked under it, and a later hang() starts un-released.
        self.release = threading.Event()


class _Stored:
    __slots__ = ("entity", "version", "create_time", "update_time")

    def __init__(self, entity, version, create_time, update_time):
        self.entity, self.version = entity, version
        self.create_time, self.update_time = create_time, update_time


# ---------------------------------------------------------------- helpers


def _now():
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _path_of(key_pb):
    """Key path as a tuple of (kind, id-or-name); id-or-name None if incomplete."""
    out = []
    for e in key_pb.path:
        which = e.WhichOneof("id_type")
        out.append((e.kind, e.id if which == "id" else e.name if which == "name" else None))
    return tuple(out)


def _sort_key(ident):
    # Datastore orders path element by element: kind, then ids before names;
    # a parent sorts before its children (tuple prefix rule does that).
    project, database, namespace, path = ident
    return (project, database, namespace, tuple((kind, isinstance(v, str), v) for kind, v in path))


def _flat_path(path):
    return tuple(itertools.chain.from_iterable(path))


def make_key(path, *, project="test-project", namespace="", database=""):
    """Key from a flat path like ("Organization", "acme", "APIKey", "k")."""
    if len(path) % 2:
        raise ValueError("path must be kind/id-or-name pairs")
    key = _KeyPb()
    key.partition_id.project_id = project
    key.partition_id.database_id = database
    key.partition_id.namespace_id = namespace
    for kind, ident in zip(path[::2], path[1::2]):
        el = key.path.add(kind=kind)
        if isinstance(ident, int):
            el.id = ident
        else:
            el.name = ident
    return ent.Key.wrap(key)


def to_value(obj):
    """Python value -> Value, choosing the type explicitly (bool before int)."""
    if isinstance(obj, ent.Value):
        return obj
    v = _ValuePb()
    if obj is None:
        v.null_value = 0
    elif isinstance(obj, bool):
        v.boolean_value = obj
    elif isinstance(obj, int):
        v.integer_value = obj
    elif isinstance(obj, float):
        v.double_value = obj
    elif isinstance(obj, str):
        v.string_value = obj
    elif isinstance(obj, bytes):
        v.blob_value = obj
    elif isinstance(obj, datetime.datetime):
        v.timestamp_value.FromDatetime(obj)
    elif isinstance(obj, ent.Key):
        v.key_value.CopyFrom(ent.Key.pb(obj))
    elif isinstance(obj, list):
        v.array_value.values.extend(ent.Value.pb(to_value(x)) for x in obj)
    else:
        raise TypeError(f"no Datastore value type for {type(obj).__name__}")
    return ent.Value.wrap(v)


def make_entity(path, properties=None, *, project="test-project", namespace="", database=""):
    """Entity from a flat key path and {name: python value or Value}."""
    e = _EntityPb()
    e.key.CopyFrom(ent.Key.pb(make_key(path, project=project, namespace=namespace, database=database)))
    for name, val in (properties or {}).items():
        e.properties[name].CopyFrom(ent.Value.pb(to_value(val)))
    return ent.Entity.wrap(e)


def from_value(v):
    """Value -> (value kind, python value), keeping the wire type visible."""
    which = v.WhichOneof("value_type")
    if which == "null_value":
        return which, None
    if which == "timestamp_value":
        t = v.timestamp_value
        return which, _EPOCH + datetime.timedelta(seconds=t.seconds, microseconds=t.nanos // 1000)
    if which == "key_value":
        return which, _flat_path(_path_of(v.key_value))
    if which == "array_value":
        return which, [from_value(x) for x in v.array_value.values]
    if which == "entity_value":
        return which, {k: from_value(x) for k, x in v.entity_value.properties.items()}
    if which == "geo_point_value":
        return which, (v.geo_point_value.latitude, v.geo_point_value.longitude)
    return which, getattr(v, which)


# ------------------------------------------------------------------ server


class DatastoreTestServer:
    """A Datastore v1 gRPC server on 127.0.0.1; see the module docstring."""

    def __init__(self, project="test-project", max_workers=16):
        self.project = project  # default for the seeding/reading helpers only
        self._max_workers = max_workers
        self._lock = threading.RLock()
        self._server = None
        self._port = None
        self._calls = collections.Counter()  # method name -> calls received
        self._requests = []  # (method name, proto-plus request), in order
        self._fault = None
        self._hung = []  # hang faults whose parked calls heal() must release
        self._clear_data()

    def _clear_data(self):
        self._entities = {}  # (project, database, namespace, path) -> _Stored
        self._versions = {}  # same keys, deletions included: for conflict checks
        self._version = 0  # bumped once per applied commit
        self._txns = {}  # transaction id -> {"read_only", "reads"}
        self._next_txn = itertools.count(1)
        # Large, like real auto-ids, so they rarely collide with seeded ids.
        self._next_id = itertools.count(5629499534213120)

    # -- lifecycle

    def start(self, port=0):
        """Bind 127.0.0.1:port (a free one by default), start serving, return the address.

        After stop(), start(port=previous port) brings the same data back on
        the same address, as a store coming back after an outage.
        """
        handlers = {
            "Lookup": (self._lookup, ds.LookupRequest, ds.LookupResponse),
            "RunQuery": (self._run_query, ds.RunQueryRequest, ds.RunQueryResponse),
            "Commit": (self._commit, ds.CommitRequest, ds.CommitResponse),
            "BeginTransaction": (self._begin_transaction, ds.BeginTransactionRequest, ds.BeginTransactionResponse),
            "Rollback": (self._rollback, ds.RollbackRequest, ds.RollbackResponse),
            "AllocateIds": (self._allocate_ids, ds.AllocateIdsRequest, ds.AllocateIdsResponse),
            "ReserveIds": (self._reserve_ids, ds.ReserveIdsRequest, ds.ReserveIdsResponse),
        }
        rpcs = {
            name: grpc.unary_unary_rpc_method_handler(
                self._dispatcher(name, impl, resp),
                request_deserializer=req.deserialize,
                response_serializer=resp.serialize,
            )
            for name, (impl, req, resp) in handlers.items()
        }
        # SO_REUSEPORT off: two servers must never share a port by accident.
        server = grpc.server(futures.ThreadPoolExecutor(self._max_workers), options=[("grpc.so_reuseport", 0)])
        # Methods missing from this table (e.g. RunAggregationQuery) get
        # UNIMPLEMENTED from gRPC itself.
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, rpcs),))
        self._port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._server = server
        return self.address

    @property
    def address(self):
        """ "127.0.0.1:PORT", the value for DATASTORE_EMULATOR_HOST."""
        if self._port is None:
            raise RuntimeError("server not started")
        return f"127.0.0.1:{self._port}"

    def stop(self, grace=None):
        self.heal()  # otherwise hung handler threads would outlive the server
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- fault injection and accounting (callable from any thread)

    def fail_with(self, code, details="injected fault", *, methods=None, times=None):
        """Answer calls with a gRPC status; only `methods` if given, only `times` calls if given."""
        self._set_fault(_Fault("fail", methods, times, code=code, details=details))

    def hang(self, seconds=None, *, methods=None, times=None):
        """Delay calls by `seconds` (None: until heal()), then answer normally."""
        self._set_fault(_Fault("hang", methods, times, seconds=seconds))

    def heal(self):
        """Back to normal; releases calls currently hung."""
        self._set_fault(None)

    def _set_fault(self, fault):
        # Any change releases hung calls, including those of a hang whose
        # `times` ran out (it is no longer self._fault but calls still wait).
        with self._lock:
            self._fault = fault
            hung, self._hung = self._hung, [fault] if fault and fault.kind == "hang" else []
        for old in hung:
            old.release.set()

    @property
    def calls(self):
        """Snapshot Counter of calls received per method name (0 if never)."""
        with self._lock:
            return collections.Counter(self._calls)

    @property
    def requests(self):
        """Snapshot list of (method name, proto-plus request) received, in order."""
        with self._lock:
            return list(self._requests)

    def clear_calls(self):
        """Zero the call counts and request log, keeping data and faults."""
        with self._lock:
            self._calls.clear()
            self._requests.clear()

    def reset(self):
        """Forget all data, transactions, counts and faults (keeps the port)."""
        self.heal()
        with self._lock:
            self._clear_data()
        self.clear_calls()

    def _dispatcher(self, name, impl, resp_type):
        def handle(request, context):
            with self._lock:
                # Counted before faults apply: a retried call counts each attempt.
                self._calls[name] += 1
                self._requests.append((name, request))
                fault = self._fault
                if fault is not None and fault.methods is not None and name not in fault.methods:
                    fault = None
                if fault is not None and fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._fault = None
            if fault is not None and fault.kind == "fail":
                context.abort(fault.code, fault.details)
            if fault is not None and fault.kind == "hang":
                fault.release.wait(fault.seconds)  # outside the lock: others proceed
                remaining = context.time_remaining()
                if not context.is_active() or (remaining is not None and remaining <= 0):
                    # The client gave up (deadline/cancel). Dropping the call
                    # keeps a timed-out write from landing later, e.g. in the
                    # next test after reset(). The deadline check matters: the
                    # client's cancel may not have reached us yet.
                    context.abort(grpc.StatusCode.CANCELLED, "client went away while hung")
            try:
                return resp_type.wrap(impl(type(request).pb(request)))
            except _RpcError as err:
                context.abort(err.code, err.details)

        return handle

    # -- seeding and inspection (bypass the RPC layer, no call counting)

    def put_entity(self, entity):
        """Store an Entity (proto-plus or raw) as-is; project defaults to self.project."""
        pb = _EntityPb()
        pb.CopyFrom(ent.Entity.pb(entity) if isinstance(entity, ent.Entity) else entity)
        with self._lock:
            part = pb.key.partition_id
            ident = self._ident(pb.key, part.project_id or self.project, part.database_id)
            part.project_id = ident[0]
            self._version += 1
            self._write(ident, pb, self._version, _now())

    def seed(self, path, properties=None, *, namespace=""):
        """Store an entity built by make_entity() in this server's project."""
        self.put_entity(make_entity(path, properties, project=self.project, namespace=namespace))

    def get_entity(self, path, *, namespace="", project=None, database=""):
        """The stored Entity (a copy) for a flat key path, or None."""
        ident = (project or self.project, database, namespace, tuple(zip(path[::2], path[1::2])))
        with self._lock:
            stored = self._entities.get(ident)
            if stored is None:
                return None
            copy = _EntityPb()
            copy.CopyFrom(stored.entity)
        return ent.Entity.wrap(copy)

    def get_properties(self, path, **where):
        """{name: (value kind, python value)} for a stored entity, or None."""
        e = self.get_entity(path, **where)
        if e is None:
            return None
        return {k: from_value(v) for k, v in ent.Entity.pb(e).properties.items()}

    def entities(self, *, kind=None, namespace=None, project=None):
        """Copies of stored entities in key order, optionally filtered."""
        project = project or self.project
        with self._lock:
            idents = sorted(
                (
                    i
                    for i in self._entities
                    if i[0] == project and namespace in (None, i[2]) and kind in (None, i[3][-1][0])
                ),
                key=_sort_key,
            )
            return [ent.Entity.wrap(_copy(self._entities[i].entity)) for i in idents]

    # -- storage internals (callers hold self._lock)

    def _ident(self, key_pb, project, database, *, complete=True):
        """Canonical storage key; checks the key the way the real API would."""
        part = key_pb.partition_id
        if part.project_id and part.project_id != project:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "mismatched project in key")
        if part.database_id != database:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "mismatched databases within request")
        path = _path_of(key_pb)
        if not path or any(not kind for kind, _ in path):
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "key path element must have a kind")
        if any(v is None for _, v in path[:-1]) or (complete and path[-1][1] is None):
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "key path is incomplete")
        return (project, database, part.namespace_id, path)

    def _write(self, ident, entity_pb, version, ts):
        old = self._entities.get(ident)
        create = old.create_time if old else ts
        self._entities[ident] = _Stored(entity_pb, version, create, ts)
        self._versions[ident] = version

    def _read_txn(self, read_options, resp):
        """The transaction a read runs in (starting one if asked), or None."""
        which = read_options.WhichOneof("consistency_type")
        if which == "transaction":
            txn = self._txns.get(read_options.transaction)
            if txn is None:
                raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid transaction.")
            return txn
        if which == "new_transaction":
            txn_id = self._new_txn(read_options.new_transaction)
            resp.transaction = txn_id
            return self._txns[txn_id]
        return None  # strong/eventual/read_time: all read the latest data here

    def _new_txn(self, options):
        txn_id = b"txn-%d" % next(self._next_txn)
        self._txns[txn_id] = {"read_only": options.WhichOneof("mode") == "read_only", "reads": {}}
        return txn_id

    # -- RPC implementations: raw request pb in, raw response pb out

    def _lookup(self, req):
        resp = ds.LookupResponse.pb()()
        now = _now()
        _unsupported(req, "property_mask")
        with self._lock:
            txn = self._read_txn(req.read_options, resp)
            for key_pb in req.keys:
                ident = self._ident(key_pb, req.project_id, req.database_id)
                if txn is not None:
                    txn["reads"].setdefault(ident, self._versions.get(ident, 0))
                stored = self._entities.get(ident)
                if stored is None:
                    result = resp.missing.add(version=self._version)
                    result.entity.key.CopyFrom(key_pb)
                else:
                    result = resp.found.add(version=stored.version)
                    result.entity.CopyFrom(stored.entity)
                    result.create_time.CopyFrom(stored.create_time)
                    result.update_time.CopyFrom(stored.update_time)
        resp.read_time.CopyFrom(now)
        return resp

    def _commit(self, req):
        resp = ds.CommitResponse.pb()()
        now = _now()
        with self._lock:
            txn = None
            if req.WhichOneof("transaction_selector") == "transaction":
                txn = self._txns.pop(req.transaction, None)
                if txn is None:
                    raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid transaction.")
                if txn["read_only"] and req.mutations:
                    raise _RpcError(
                        grpc.StatusCode.INVALID_ARGUMENT, "Cannot modify entities in a read-only transaction."
                    )
                if req.mode == Mode.NON_TRANSACTIONAL:
                    raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "transaction given in a non-transactional commit")
                # Optimistic concurrency: anything read since begin must be unchanged.
                if any(self._versions.get(i, 0) != v for i, v in txn["reads"].items()):
                    raise _RpcError(grpc.StatusCode.ABORTED, "too much contention on these datastore entities")
            elif req.mode == Mode.TRANSACTIONAL and not req.HasField("single_use_transaction"):
                raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "transactional commit without a transaction")

            # Validate every mutation before applying any, so a failing
            # commit leaves the store untouched (atomicity).
            plan, seen = [], set()
            for m in req.mutations:
                _unsupported(m, "property_mask", "property_transforms", "update_time")
                op = m.WhichOneof("operation")
                if op is None:
                    raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "mutation without operation")
                key_pb = m.delete if op == "delete" else getattr(m, op).key
                ident = self._ident(key_pb, req.project_id, req.database_id, complete=op == "delete" or op == "update")
                allocated = None
                if ident[3][-1][1] is None:
                    allocated = _copy(key_pb)
                    allocated.path[-1].id = next(self._next_id)
                    ident = ident[:3] + (_path_of(allocated),)
                if ident in seen:
                    raise _RpcError(
                        grpc.StatusCode.INVALID_ARGUMENT, "A commit cannot have two mutations on the same entity."
                    )
                seen.add(ident)
                exists = ident in self._entities
                if op == "insert" and exists:
                    raise _RpcError(grpc.StatusCode.ALREADY_EXISTS, "entity already exists")
                if op == "update" and not exists:
                    raise _RpcError(grpc.StatusCode.NOT_FOUND, "no entity to update")
                conflict = m.WhichOneof(
                    "conflict_detection_strategy"
                ) == "base_version" and m.base_version != self._versions.get(ident, 0)
                plan.append((op, m, ident, allocated, conflict))

            self._version += 1
            for op, m, ident, allocated, conflict in plan:
                result = resp.mutation_results.add(conflict_detected=conflict)
                # Like the real API, key is only returned when it was allocated:
                # the client zips these keys with its partial-key entities.
                if allocated is not None:
                    result.key.CopyFrom(allocated)
                if conflict:
                    result.version = self._versions.get(ident, 0)
                    continue
                result.version = self._version
                if op == "delete":
                    self._entities.pop(ident, None)
                    self._versions[ident] = self._version
                    continue
                entity = _copy(getattr(m, op))
                entity.key.partition_id.project_id = ident[0]
                if allocated is not None:
                    entity.key.path[-1].id = allocated.path[-1].id
                self._write(ident, entity, self._version, now)
                result.create_time.CopyFrom(self._entities[ident].create_time)
                result.update_time.CopyFrom(now)
            resp.index_updates = len(plan)
        resp.commit_time.CopyFrom(now)
        return resp

    def _begin_transaction(self, req):
        resp = ds.BeginTransactionResponse.pb()()
        with self._lock:
            resp.transaction = self._new_txn(req.transaction_options)
        return resp

    def _rollback(self, req):
        with self._lock:
            if self._txns.pop(req.transaction, None) is None:
                raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid transaction.")
        return ds.RollbackResponse.pb()()

    def _allocate_ids(self, req):
        resp = ds.AllocateIdsResponse.pb()()
        with self._lock:
            for key_pb in req.keys:
                ident = self._ident(key_pb, req.project_id, req.database_id, complete=False)
                if ident[3][-1][1] is not None:
                    raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "key is already complete")
                key = resp.keys.add()
                key.CopyFrom(key_pb)
                key.partition_id.project_id = req.project_id
                key.path[-1].id = next(self._next_id)
        return resp

    def _reserve_ids(self, req):
        with self._lock:
            for key_pb in req.keys:
                self._ident(key_pb, req.project_id, req.database_id)
        return ds.ReserveIdsResponse.pb()()

    def _run_query(self, req):
        if req.WhichOneof("query_type") != "query":
            raise _RpcError(grpc.StatusCode.UNIMPLEMENTED, "only structured queries (no GQL)")
        _unsupported(req, "property_mask", "explain_options")
        q = req.query
        if len(q.kind) > 1:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "at most one kind per query")
        if q.distinct_on or any(
            o.property.name != "__key__" or o.direction == qry.PropertyOrder.Direction.DESCENDING for o in q.order
        ):
            raise _RpcError(grpc.StatusCode.UNIMPLEMENTED, "only ascending __key__ order")
        names = [p.property.name for p in q.projection]
        if names not in ([], ["__key__"]):
            raise _RpcError(grpc.StatusCode.UNIMPLEMENTED, "only keys-only projection")
        keys_only = bool(names)
        part = req.partition_id
        if part.project_id and part.project_id != req.project_id:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "mismatched project in partition")
        scope = (req.project_id, req.database_id, part.namespace_id)
        kind = q.kind[0].name if q.kind else None

        resp = ds.RunQueryResponse.pb()()
        resp.query.CopyFrom(q)
        batch = resp.batch
        with self._lock:
            txn = self._read_txn(req.read_options, resp)
            matched = sorted(
                (
                    i
                    for i, s in self._entities.items()
                    if i[:3] == scope
                    and (i[3][-1][0] == kind if kind else not i[3][-1][0].startswith("__"))
                    and (not q.HasField("filter") or self._matches(q.filter, i, s.entity, scope))
                ),
                key=_sort_key,
            )
            if q.start_cursor:
                start = _sort_key(self._cursor_ident(q.start_cursor, scope))
                matched = [i for i in matched if _sort_key(i) > start]
            skipped, matched = matched[: q.offset], matched[q.offset :]
            cut = q.HasField("limit") and len(matched) > q.limit.value
            if q.HasField("limit"):
                matched = matched[: q.limit.value]
            batch.skipped_results = len(skipped)
            if skipped:
                batch.skipped_cursor = self._cursor(skipped[-1])
            batch.entity_result_type = (
                qry.EntityResult.ResultType.KEY_ONLY if keys_only else qry.EntityResult.ResultType.FULL
            )
            for ident in matched:
                stored = self._entities[ident]
                result = batch.entity_results.add(version=stored.version, cursor=self._cursor(ident))
                if keys_only:
                    result.entity.key.CopyFrom(stored.entity.key)
                else:
                    result.entity.CopyFrom(stored.entity)
                result.create_time.CopyFrom(stored.create_time)
                result.update_time.CopyFrom(stored.update_time)
                if txn is not None:
                    txn["reads"].setdefault(ident, stored.version)
            last = (matched or skipped or [None])[-1]
            batch.end_cursor = self._cursor(last) if last else q.start_cursor
            batch.more_results = MoreResults.MORE_RESULTS_AFTER_LIMIT if cut else MoreResults.NO_MORE_RESULTS
            batch.snapshot_version = self._version
        batch.read_time.CopyFrom(_now())
        return resp

    def _cursor(self, ident):
        # Opaque to clients; we use the serialised key of the last entity.
        project, database, namespace, path = ident
        flat = _flat_path(path)
        key = ent.Key.pb(make_key(flat, project=project, namespace=namespace, database=database))
        return key.SerializeToString(deterministic=True)

    def _cursor_ident(self, cursor, scope):
        try:
            return self._ident(_KeyPb.FromString(cursor), *scope[:2])
        except Exception as err:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "invalid cursor") from err

    def _matches(self, flt, ident, entity, scope):
        which = flt.WhichOneof("filter_type")
        if which == "composite_filter":
            cf = flt.composite_filter
            results = (self._matches(f, ident, entity, scope) for f in cf.filters)
            return all(results) if cf.op == CompOp.AND else any(results)
        pf = flt.property_filter
        if pf.property.name == "__key__":
            if pf.value.WhichOneof("value_type") != "key_value":
                raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "__key__ filter needs a key")
            target = self._ident(pf.value.key_value, *scope[:2])
            if pf.op == Op.HAS_ANCESTOR:
                return ident[:3] == target[:3] and ident[3][: len(target[3])] == target[3]
            return _compare(pf.op, ("key", _sort_key(ident)), ("key", _sort_key(target)))
        if pf.op == Op.HAS_ANCESTOR:
            raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "HAS_ANCESTOR needs __key__")
        if pf.property.name not in entity.properties:
            return False
        value = entity.properties[pf.property.name]
        # An array property matches if any element does; unindexed values never match.
        values = value.array_value.values if value.HasField("array_value") else [value]
        wanted = (
            [self._comparable(v, scope) for v in pf.value.array_value.values]
            if pf.op in (Op.IN, Op.NOT_IN)
            else self._comparable(pf.value, scope)
        )
        return any(not v.exclude_from_indexes and _compare(pf.op, self._comparable(v, scope), wanted) for v in values)

    def _comparable(self, v, scope):
        """(type, python value) so that only same-typed values compare equal."""
        which = v.WhichOneof("value_type")
        if which == "key_value":
            part = v.key_value.partition_id  # a stored reference may name any project
            return which, _sort_key(
                (part.project_id or scope[0], part.database_id, part.namespace_id, _path_of(v.key_value))
            )
        if which == "timestamp_value":
            return which, (v.timestamp_value.seconds, v.timestamp_value.nanos)
        if which in ("null_value", "boolean_value", "integer_value", "double_value", "string_value", "blob_value"):
            return which, getattr(v, which)
        return which, getattr(v, which).SerializeToString(deterministic=True)


_ORDERED_OPS = {
    Op.LESS_THAN: "__lt__",
    Op.LESS_THAN_OR_EQUAL: "__le__",
    Op.GREATER_THAN: "__gt__",
    Op.GREATER_THAN_OR_EQUAL: "__ge__",
}


def _compare(op, a, b):
    """a, b are (type, value) pairs (b a list for IN); different types never match."""
    if op == Op.EQUAL:
        return a == b
    if op == Op.NOT_EQUAL:
        return a != b
    if op in (Op.IN, Op.NOT_IN):
        return (a in b) == (op == Op.IN)
    if op not in _ORDERED_OPS:
        raise _RpcError(grpc.StatusCode.UNIMPLEMENTED, f"filter operator {op}")
    return a[0] == b[0] and getattr(a[1], _ORDERED_OPS[op])(b[1])


def _unsupported(msg, *fields):
    # Fail loudly on request features that would change results if ignored.
    present = {field.name for field, _ in msg.ListFields()}
    for name in present.intersection(fields):
        raise _RpcError(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not supported")


def _copy(pb):
    out = type(pb)()
    out.CopyFrom(pb)
    return out
