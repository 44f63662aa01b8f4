/**
 * A minimal OTLP/HTTP receiver (JSON encoding) for child-process tests: applications started
 * zero-code export to it as to a Collector (`OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`), and the test reads back flattened spans, log records
 * and metric points with exact values.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

type AnyValue = {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
};
type KeyValue = { key: string; value: AnyValue };

export interface ReceivedSpan {
  scope: string;
  name: string;
  spanId: string;
  parentSpanId: string | undefined;
  startMillis: number;
  endMillis: number;
  attributes: Record<string, unknown>;
}

export interface ReceivedLog {
  scope: string;
  eventName: string | undefined;
  severityText: string | undefined;
  spanId: string | undefined;
  attributes: Record<string, unknown>;
}

export interface ReceivedPoint {
  scope: string;
  metric: string;
  unit: string | undefined;
  attributes: Record<string, unknown>;
  /** `asInt` / `asDouble`, or a histogram's `count`. */
  value: number;
}

function valueOf(v: AnyValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return v.boolValue;
}

function attributesOf(list: KeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) out[key] = valueOf(value);
  return out;
}

const nanosToMillis = (nanos: string) => Number(BigInt(nanos) / 1000n) / 1000;

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly logs: ReceivedLog[] = [];
  readonly points: ReceivedPoint[] = [];
  readonly #server = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      try {
        this.#receive(request.url ?? '', JSON.parse(body) as Record<string, unknown[]>);
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch (error) {
        response.writeHead(400).end(String(error));
      }
    });
  });

  /** Listens on a free loopback port; returns the endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #receive(url: string, body: any): void {
    if (url === '/v1/traces') {
      for (const rs of body.resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            this.spans.push({
              scope: ss.scope?.name,
              name: s.name,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId || undefined,
              startMillis: nanosToMillis(s.startTimeUnixNano),
              endMillis: nanosToMillis(s.endTimeUnixNano),
              attributes: attributesOf(s.attributes),
            });
    } else if (url === '/v1/logs') {
      for (const rl of body.resourceLogs ?? [])
        for (const sl of rl.scopeLogs ?? [])
          for (const r of sl.logRecords ?? [])
            this.logs.push({
              scope: sl.scope?.name,
              eventName: r.eventName || undefined,
              severityText: r.severityText,
              spanId: r.spanId || undefined,
              attributes: attributesOf(r.attributes),
            });
    } else if (url === '/v1/metrics') {
      for (const rm of body.resourceMetrics ?? [])
        for (const sm of rm.scopeMetrics ?? [])
          for (const m of sm.metrics ?? []) {
            const data = m.sum ?? m.gauge ?? m.histogram;
            for (const p of data?.dataPoints ?? [])
              this.points.push({
                scope: sm.scope?.name,
                metric: m.name,
                unit: m.unit,
                attributes: attributesOf(p.attributes),
                value: Number(p.asInt ?? p.asDouble ?? p.count),
              });
          }
    }
  }
}
