"""The subscriptions, publishers, services and timers a node part creates, and their removal.

Each entity is made through the node's public ``create_*`` call and remembered with the public
``destroy_*`` call that removes it, so :meth:`NodeEntities.destroy_all` needs no guessing from
types. Publishers come from a :class:`PublisherKind`: plain ones, or lifecycle publishers that
publish only while their managed node is active.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rclpy.node import Node


@dataclass(frozen=True)
class PublisherKind:
    """How a node makes and removes a publisher (``create(msg_type, topic, qos)``, ``destroy(pub)``)."""

    create: Callable[..., Any]
    destroy: Callable[[Any], Any]


def plain_publishers(node: Node) -> PublisherKind:
    """Publishers that always publish."""
    return PublisherKind(node.create_publisher, node.destroy_publisher)


def lifecycle_publishers(node: Any) -> PublisherKind:
    """Lifecycle publishers of a ``LifecycleNode``: enabled by its activate transition, disabled by
    deactivate (``publish`` does nothing in between)."""
    return PublisherKind(node.create_lifecycle_publisher, node.destroy_lifecycle_publisher)


class NodeEntities:
    """Entities created on ``node``, each with the call that destroys it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._owned: list[tuple[Callable[[Any], Any], Any]] = []

    def _own(self, entity: Any, destroy: Callable[[Any], Any]) -> Any:
        self._owned.append((destroy, entity))
        return entity

    def subscription(self, *args: Any, **kwargs: Any) -> Any:
        """``node.create_subscription(*args, **kwargs)``, owned."""
        return self._own(self.node.create_subscription(*args, **kwargs), self.node.destroy_subscription)

    def publisher(self, kind: PublisherKind, *args: Any, **kwargs: Any) -> Any:
        """A publisher of ``kind`` (``create(*args, **kwargs)``), owned."""
        return self._own(kind.create(*args, **kwargs), kind.destroy)

    def service(self, *args: Any, **kwargs: Any) -> Any:
        """``node.create_service(*args, **kwargs)``, owned."""
        return self._own(self.node.create_service(*args, **kwargs), self.node.destroy_service)

    def timer(self, *args: Any, **kwargs: Any) -> Any:
        """``node.create_timer(*args, **kwargs)``, owned."""
        return self._own(self.node.create_timer(*args, **kwargs), self.node.destroy_timer)

    def __len__(self) -> int:
        return len(self._owned)

    def destroy_all(self) -> None:
        """Destroy every owned entity, newest first."""
        owned, self._owned = self._owned, []
        for destroy, entity in reversed(owned):
            destroy(entity)
