"""Cluster-scoped objects and namespaces."""


def test_reader_role(cluster):
    assert cluster.must_get("ClusterRole", "shop-reader")["rules"]


def test_namespace_is_the_release_namespace(devloop, cluster):
    assert cluster.namespace == devloop.namespace("shop")
