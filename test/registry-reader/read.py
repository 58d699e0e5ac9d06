"""Independent reader for the schema registry tests: reads a Kafka topic from the beginning with
Confluent's Python client (librdkafka) and decodes every value through the schema registry with
Confluent's own deserializers (Avro: fastavro; JSON Schema: jsonschema validation; Protobuf:
the .proto the registry holds, compiled by grpcio-tools' protoc). Nothing of the bridge's
encoding code is used. Prints one JSON line per record:

  {"partition": 0, "offset": 5, "key": "badge-0001", "schema_id": 3, "value": {...}, "headers": {...}}

or {"partition": .., "offset": .., "error": "..."} when a value does not decode. Ends when
--expected records were read and every partition is at its end, or after --timeout seconds.

Usage: read.py --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8080/apis/ccompat/v7 \
               --topic t --format avro|protobuf|json_schema [--message pkg.Name] [--expected N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext


def protobuf_class(registry, schema_id, message):
    """The message class of `message` in the .proto the registry holds under `schema_id`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_tools import protoc
    import grpc_tools

    text = registry.get_schema(schema_id).schema_str
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "schema.proto")
        out = os.path.join(d, "schema.desc")
        with open(src, "w") as f:
            f.write(text)
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["protoc", f"-I{d}", f"-I{include}", f"--descriptor_set_out={out}", src])
        if rc != 0:
            raise RuntimeError(f"protoc could not compile schema {schema_id}")
        fds = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as f:
            fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(message))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--format", required=True, choices=["avro", "protobuf", "json_schema"])
    ap.add_argument("--message", help="protobuf: the full message name")
    ap.add_argument("--expected", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()

    registry = SchemaRegistryClient({"url": a.registry})
    if a.format == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        deserialize = AvroDeserializer(registry)
    elif a.format == "json_schema":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        deserialize = JSONDeserializer(None, schema_registry_client=registry)
    else:
        if not a.message:
            sys.exit("--message is required with --format protobuf")
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from google.protobuf.json_format import MessageToDict

        classes = {}

        def deserialize(value, ctx):
            schema_id = int.from_bytes(value[1:5], "big")
            if schema_id not in classes:
                cls = protobuf_class(registry, schema_id, a.message)
                classes[schema_id] = ProtobufDeserializer(cls, {"use.deprecated.format": False})
            msg = classes[schema_id](value, ctx)
            return MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)

    consumer = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": f"registry-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 3,
        }
    )
    consumer.subscribe([a.topic])
    seen = 0
    at_end = set()
    assigned = None
    deadline = time.time() + a.timeout
    out = sys.stdout
    while time.time() < deadline:
        msg = consumer.poll(0.5)
        if assigned is None:
            parts = consumer.assignment()
            if parts:
                assigned = {p.partition for p in parts}
        if msg is None:
            if assigned and at_end >= assigned and seen >= a.expected:
                break
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
                if assigned and at_end >= assigned and seen >= a.expected:
                    break
                continue
            if msg.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            print(json.dumps({"error": str(msg.error())}), file=sys.stderr)
            continue
        at_end.discard(msg.partition())
        seen += 1
        raw = msg.value()
        line = {"partition": msg.partition(), "offset": msg.offset(), "key": msg.key().decode() if msg.key() is not None else None}
        line["headers"] = {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in (msg.headers() or [])}
        try:
            line["schema_id"] = int.from_bytes(raw[1:5], "big") if raw and len(raw) >= 5 else None
            line["value"] = deserialize(raw, SerializationContext(a.topic, MessageField.VALUE))
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test, per record
            line["error"] = f"{type(e).__name__}: {e}"
        out.write(json.dumps(line, default=str) + "\n")
    consumer.close()
    out.flush()


if __name__ == "__main__":
    main()
