"""Garbage collection and namespace lifecycle of the embedded cluster.

Owns what removes and replenishes objects on its own: the garbage collector (objects
whose owners are all gone are deleted in the background; dangling owner references next
to live ones are dropped; the `orphan` and `foregroundDeletion` finalizers are carried
out), the namespace controller (a terminating namespace is emptied of every namespaced
type the registry serves, custom resources included, then its `kubernetes` finalizer is
cleared so the store removes it) and the service-account controller (every active
namespace has a `default` ServiceAccount).

Simplified: a foreground deletion waits for every dependent, not only those with
`blockOwnerDeletion`.
"""

from __future__ import annotations

from pytest_devloop.embedded import errors
from pytest_devloop.embedded.reconcile import Context, Controller, Handler, Key, is_deleting
from pytest_devloop.embedded.store import Change, clone, meta

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


class GarbageCollector(Controller):
    """Deletes dependents of removed owners and runs the deletion finalizers."""

    watches = ("*",)

    def handlers(self) -> dict[str, Handler]:
        return {"gc": self.collect, "gc-finalize": self.finalize}

    def observe(self, change: Change) -> None:
        index = self.ctx.index
        m = meta(change.new)
        uid = str(m.get("uid", ""))
        refs = m.get("ownerReferences") or []
        if change.type == "DELETED":
            for key, ns, name in index.dependents(uid):
                self.ctx.enqueue(Key("gc", ns, name, key))
            for ref in refs:
                owner = index.by_uid.get(str(ref.get("uid")))
                if owner is not None:
                    self.ctx.enqueue(Key("gc-finalize", owner[1], owner[2], owner[0]))
            return
        ns, name = str(m.get("namespace", "")), str(m.get("name", ""))
        old_refs = meta(change.old).get("ownerReferences") if change.old else None
        if refs and refs != old_refs:
            self.ctx.enqueue(Key("gc", ns, name, change.rt.key))
        finalizers = m.get("finalizers") or []
        if m.get("deletionTimestamp") and (ORPHAN in finalizers or FOREGROUND in finalizers):
            self.ctx.enqueue(Key("gc-finalize", ns, name, change.rt.key))

    def collect(self, key: Key) -> None:
        ctx = self.ctx
        rt = ctx.rt_for_key(key.resource)
        obj = ctx.get(rt, key.namespace, key.name) if rt is not None else None
        if rt is None or obj is None or is_deleting(obj):
            return
        refs = meta(obj).get("ownerReferences") or []
        alive = [r for r in refs if str(r.get("uid")) in ctx.index.by_uid]
        if len(alive) == len(refs):
            return
        if not alive:
            ctx.delete(rt, key.namespace, key.name, propagation="Background")
            return
        stripped = clone(obj)
        stripped["metadata"]["ownerReferences"] = alive
        ctx.update(rt, stripped)

    def finalize(self, key: Key) -> None:
        ctx = self.ctx
        rt = ctx.rt_for_key(key.resource)
        obj = ctx.get(rt, key.namespace, key.name) if rt is not None else None
        if rt is None or obj is None or not is_deleting(obj):
            return
        uid = meta(obj).get("uid")
        finalizers = list(meta(obj).get("finalizers") or [])
        blocking = 0
        for dep_key, ns, name in ctx.index.dependents(str(uid)):
            dep_rt = ctx.rt_for_key(dep_key)
            dep = ctx.get(dep_rt, ns, name) if dep_rt is not None else None
            if dep_rt is None or dep is None:
                continue
            refs = meta(dep).get("ownerReferences") or []
            if ORPHAN in finalizers:
                stripped = clone(dep)
                stripped["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                ctx.update(dep_rt, stripped)
            elif FOREGROUND in finalizers:
                if not is_deleting(dep):
                    grandchildren = ctx.index.dependents(str(meta(dep).get("uid")))
                    ctx.delete(dep_rt, ns, name, "Foreground" if grandchildren else "Background")
                if ctx.get(dep_rt, ns, name) is not None:
                    blocking += 1
        if ORPHAN in finalizers:
            finalizers.remove(ORPHAN)
        elif FOREGROUND in finalizers and not blocking:
            finalizers.remove(FOREGROUND)
        else:
            return
        done = clone(obj)
        done["metadata"]["finalizers"] = finalizers
        ctx.update(rt, done)


class NamespaceController(Controller):
    """Empties terminating namespaces and gives active ones a default ServiceAccount."""

    watches = ("*",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._terminating: set[str] = set()

    def handlers(self) -> dict[str, Handler]:
        return {"namespace": self.finish, "serviceaccount": self.ensure_service_account}

    def observe(self, change: Change) -> None:
        m = meta(change.new)
        name = str(m.get("name", ""))
        if change.rt.key == "namespaces":
            if change.type == "DELETED":
                self._terminating.discard(name)
                self.ctx.events.forget_namespace(name)
            elif m.get("deletionTimestamp"):
                self._terminating.add(name)
                self.ctx.enqueue(Key("namespace", "", name))
            elif change.type == "ADDED":
                self.ctx.enqueue(Key("serviceaccount", name, "default"))
            return
        ns = str(m.get("namespace", ""))
        if change.type != "DELETED":
            return
        if ns in self._terminating:
            self.ctx.enqueue(Key("namespace", "", ns))
        elif change.rt.key == "serviceaccounts" and name == "default":
            self.ctx.enqueue(Key("serviceaccount", ns, "default"))

    def finish(self, key: Key) -> None:
        ctx = self.ctx
        ns = ctx.get(ctx.namespaces, "", key.name)
        if ns is None or not is_deleting(ns):
            return
        remaining = 0
        for rt in ctx.registry.all():
            if not rt.namespaced:
                continue
            for name in ctx.index.names(rt.key, key.name):
                obj = ctx.get(rt, key.name, name)
                if obj is None:
                    continue
                if not is_deleting(obj):
                    try:
                        _, removed = ctx.store.delete(rt, key.name, name, propagation="Background")
                    except errors.ApiError:
                        removed = ctx.get(rt, key.name, name) is None
                    if removed:
                        continue
                remaining += 1
        if remaining:
            return  # objects held by finalizers; their removal re-queues this namespace
        done = clone(ns)
        done.setdefault("spec", {})["finalizers"] = []
        ctx.update(ctx.namespaces, done)

    def ensure_service_account(self, key: Key) -> None:
        ctx = self.ctx
        ns = ctx.get(ctx.namespaces, "", key.namespace)
        if ns is None or is_deleting(ns):
            return
        if ctx.get(ctx.serviceaccounts, key.namespace, "default") is None:
            ctx.create(
                ctx.serviceaccounts, {"metadata": {"name": "default", "namespace": key.namespace}}
            )
