import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The anchor for test/integration/kafka-cluster.test.ts: the Java producer (kafka-clients from
 * the Kafka distribution the harness installs) with enable.idempotence=true and acks=all,
 * otherwise its defaults (delivery.timeout.ms 120 s, max.in.flight 5), writing the same badge
 * records as the bridge (key = badge id, value {"badge_id","seq"}, a unique mqtt.message_id
 * header) at the same rate, so the test reads both back with the same reader.
 *
 * Run as a single source file (java 11+ compiles it in memory; nothing to build):
 *   java -cp 'libs/*' IdempotentProducer.java <bootstrap> <topic> <badges> <perBadge> <ratePerS>
 * Prints one JSON line: {"sent":n,"acked":n,"failed":n,"firstError":"..."}.
 */
public class IdempotentProducer {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String topic = args[1];
    int badges = Integer.parseInt(args[2]);
    int perBadge = Integer.parseInt(args[3]);
    int ratePerS = Integer.parseInt(args[4]);
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.CLIENT_ID_CONFIG, "java-anchor");
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    AtomicLong acked = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    String[] firstError = new String[1];
    long sent = 0;
    long started = System.nanoTime();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      for (int seq = 0; seq < perBadge; seq++) {
        for (int b = 0; b < badges; b++) {
          String id = String.format("badge-%04d", b);
          ProducerRecord<String, String> r = new ProducerRecord<>(topic, id, "{\"badge_id\":\"" + id + "\",\"seq\":" + seq + "}");
          r.headers().add("mqtt.message_id", UUID.randomUUID().toString().getBytes(StandardCharsets.UTF_8));
          producer.send(r, (md, err) -> {
            if (err == null) acked.incrementAndGet();
            else {
              failed.incrementAndGet();
              synchronized (firstError) {
                if (firstError[0] == null) firstError[0] = err.toString();
              }
            }
          });
          sent++;
          long due = started + (sent * 1_000_000_000L) / ratePerS;
          long wait = due - System.nanoTime();
          if (wait > 0) Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
        }
      }
      producer.flush();
    }
    String err = firstError[0] == null ? "" : firstError[0].replace("\\", "\\\\").replace("\"", "'");
    System.out.println("{\"sent\":" + sent + ",\"acked\":" + acked.get() + ",\"failed\":" + failed.get() + ",\"firstError\":\"" + err + "\"}");
  }
}
