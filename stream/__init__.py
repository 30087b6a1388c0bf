"""The stream layer: the event model and wire format, the emitter client, and the Faust worker.

Services that emit events need only `Event` and `Emitter`:

    async with Emitter(bootstrap, "events", "events.dlq", accept_range) as emitter:
        await emitter.emit(Event(user_id=1, item_id=2, category_id=3, behavior="pv", ts=1511544070))
"""

from stream.emitter import EmitReport, Emitter
from stream.events import Event, Rejected, RejectReason, decode_message, encode_events

__all__ = ["EmitReport", "Emitter", "Event", "RejectReason", "Rejected", "decode_message", "encode_events"]
