import { createRequire } from 'node:module';
import type protobuf from 'protobufjs';

/**
 * The Sparkplug B payload definition (Eclipse Sparkplug 3.0), decoded with protobufjs.
 *
 * The message layout, field numbers and wire types are those of `sparkplug_b.proto` from the
 * Eclipse Tahu project (the specification's reference definition, EPL-2.0); they are the wire
 * contract and must not change. It lives here as text, parsed once at load, so that it ships
 * inside the compiled module (the build copies only TypeScript output) and there is no
 * generated code to keep in step. Field names keep the .proto's snake_case (`keepCase`).
 *
 * 64-bit fields (`uint64`) decode to `Long` objects: protobufjs only does that when the `long`
 * package is present (it is a dependency of protobufjs 8), otherwise it would return rounded
 * JavaScript numbers. `payloadType()` makes that a failure of the first use (at start when a route decodes Sparkplug) instead of silent
 * rounding.
 */
export const SPARKPLUG_B_PROTO = `
syntax = "proto2";
package org.eclipse.tahu.protobuf;

message Payload {
  message Template {
    message Parameter {
      optional string name = 1;
      optional uint32 type = 2;
      oneof value {
        uint32 int_value = 3;
        uint64 long_value = 4;
        float float_value = 5;
        double double_value = 6;
        bool boolean_value = 7;
        string string_value = 8;
        ParameterValueExtension extension_value = 9;
      }
      message ParameterValueExtension { extensions 1 to max; }
    }
    optional string version = 1;
    repeated Metric metrics = 2;
    repeated Parameter parameters = 3;
    optional string template_ref = 4;
    optional bool is_definition = 5;
    extensions 6 to max;
  }

  message DataSet {
    message DataSetValue {
      oneof value {
        uint32 int_value = 1;
        uint64 long_value = 2;
        float float_value = 3;
        double double_value = 4;
        bool boolean_value = 5;
        string string_value = 6;
        DataSetValueExtension extension_value = 7;
      }
      message DataSetValueExtension { extensions 1 to max; }
    }
    message Row {
      repeated DataSetValue elements = 1;
      extensions 2 to max;
    }
    optional uint64 num_of_columns = 1;
    repeated string columns = 2;
    repeated uint32 types = 3;
    repeated Row rows = 4;
    extensions 5 to max;
  }

  message PropertyValue {
    optional uint32 type = 1;
    optional bool is_null = 2;
    oneof value {
      uint32 int_value = 3;
      uint64 long_value = 4;
      float float_value = 5;
      double double_value = 6;
      bool boolean_value = 7;
      string string_value = 8;
      PropertySet propertyset_value = 9;
      PropertySetList propertysets_value = 10;
      PropertyValueExtension extension_value = 11;
    }
    message PropertyValueExtension { extensions 1 to max; }
  }

  message PropertySet {
    repeated string keys = 1;
    repeated PropertyValue values = 2;
    extensions 3 to max;
  }

  message PropertySetList {
    repeated PropertySet propertyset = 1;
    extensions 2 to max;
  }

  message MetaData {
    optional bool is_multi_part = 1;
    optional string content_type = 2;
    optional uint64 size = 3;
    optional uint64 seq = 4;
    optional string file_name = 5;
    optional string file_type = 6;
    optional string md5 = 7;
    optional string description = 8;
    extensions 9 to max;
  }

  message Metric {
    optional string name = 1;
    optional uint64 alias = 2;
    optional uint64 timestamp = 3;
    optional uint32 datatype = 4;
    optional bool is_historical = 5;
    optional bool is_transient = 6;
    optional bool is_null = 7;
    optional MetaData metadata = 8;
    optional PropertySet properties = 9;
    oneof value {
      uint32 int_value = 10;
      uint64 long_value = 11;
      float float_value = 12;
      double double_value = 13;
      bool boolean_value = 14;
      string string_value = 15;
      bytes bytes_value = 16;
      DataSet dataset_value = 17;
      Template template_value = 18;
      MetricValueExtension extension_value = 19;
    }
    message MetricValueExtension { extensions 1 to max; }
  }

  optional uint64 timestamp = 1;
  repeated Metric metrics = 2;
  optional uint64 seq = 3;
  optional string uuid = 4;
  optional bytes body = 5;
  extensions 6 to max;
}
`;

/** A protobufjs `Long` as decoded from a uint64 field. */
export type PbLong = protobuf.Long;

/**
 * protobufjs and the parsed definition are loaded on the first Sparkplug payload, not at start:
 * a bridge without Sparkplug routes does not pay for them (about 2 MB resident). `require`, not
 * `import()`, so that decoding stays synchronous; protobufjs is a CommonJS package.
 */
let payloadTypeCache: protobuf.Type | undefined;

/** The Sparkplug B `Payload` message type (encode and decode), parsed on first use. */
export function payloadType(): protobuf.Type {
  if (payloadTypeCache) return payloadTypeCache;
  const pb = createRequire(import.meta.url)('protobufjs') as typeof protobuf;
  // 64-bit fields decode exactly (as Long objects) only with Long support: fail, never round.
  if (!pb.util.Long) throw new Error('protobufjs has no Long support: 64-bit Sparkplug values would be rounded');
  payloadTypeCache = pb.parse(SPARKPLUG_B_PROTO, { keepCase: true }).root.lookupType('org.eclipse.tahu.protobuf.Payload');
  return payloadTypeCache;
}

// --- decoded message shapes ---------------------------------------------------------------
// What Type.decode returns, with keepCase names. Optional fields are own properties only when
// present on the wire (their defaults live on the prototype), so presence is tested with
// `has()`, never by comparing with a default. `value` is protobufjs' virtual oneof getter: the
// name of the value field that is set, if any.

export interface PbValueHolder {
  readonly value?: string;
  readonly int_value?: number;
  readonly long_value?: PbLong;
  readonly float_value?: number;
  readonly double_value?: number;
  readonly boolean_value?: boolean;
  readonly string_value?: string;
}

export interface PbMetaData {
  readonly is_multi_part?: boolean;
  readonly content_type?: string;
  readonly size?: PbLong;
  readonly seq?: PbLong;
  readonly file_name?: string;
  readonly file_type?: string;
  readonly md5?: string;
  readonly description?: string;
}

export interface PbPropertyValue extends PbValueHolder {
  readonly type?: number;
  readonly is_null?: boolean;
  readonly propertyset_value?: PbPropertySet;
  readonly propertysets_value?: { readonly propertyset: readonly PbPropertySet[] };
}

export interface PbPropertySet {
  readonly keys: readonly string[];
  readonly values: readonly PbPropertyValue[];
}

export interface PbDataSet {
  readonly num_of_columns?: PbLong;
  readonly columns: readonly string[];
  readonly types: readonly number[];
  readonly rows: readonly { readonly elements: readonly PbValueHolder[] }[];
}

export interface PbParameter extends PbValueHolder {
  readonly name?: string;
  readonly type?: number;
}

export interface PbTemplate {
  readonly version?: string;
  readonly metrics: readonly PbMetric[];
  readonly parameters: readonly PbParameter[];
  readonly template_ref?: string;
  readonly is_definition?: boolean;
}

export interface PbMetric extends PbValueHolder {
  readonly name?: string;
  readonly alias?: PbLong;
  readonly timestamp?: PbLong;
  readonly datatype?: number;
  readonly is_historical?: boolean;
  readonly is_transient?: boolean;
  readonly is_null?: boolean;
  readonly metadata?: PbMetaData;
  readonly properties?: PbPropertySet;
  readonly bytes_value?: Uint8Array;
  readonly dataset_value?: PbDataSet;
  readonly template_value?: PbTemplate;
}

export interface PbPayload {
  readonly timestamp?: PbLong;
  readonly metrics: readonly PbMetric[];
  readonly seq?: PbLong;
  readonly uuid?: string;
  readonly body?: Uint8Array;
}

/** Decodes a Sparkplug B payload. Throws (protobufjs' Error or RangeError) on bytes that are not one. */
export function decodePayload(bytes: Uint8Array): PbPayload {
  return payloadType().decode(bytes) as unknown as PbPayload;
}

/** True when the optional field `k` was present on the wire. */
export function has<T extends object>(m: T, k: keyof T & string): boolean {
  return Object.prototype.hasOwnProperty.call(m, k);
}
