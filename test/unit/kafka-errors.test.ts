import { MultipleErrors, UserError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { classifyKafkaError, missingTopic } from '../../src/kafka/errors.js';
import { topicMissingProblem } from '../../src/kafka/platformatic-client.js';

describe('Kafka errors: a topic that does not exist', () => {
  it('classifies the client\'s "Unknown topic <name>." as topic_missing (not unknown) and names the topic', () => {
    const err = new UserError('Unknown topic badges.');
    expect(classifyKafkaError(err)).toBe('topic_missing');
    expect(missingTopic(err)).toBe('badges');
    const wrapped = new MultipleErrors('produce failed for 2 of 4 partitions', [new UserError('Unknown topic site.a.b.'), new Error('other')]);
    expect(classifyKafkaError(wrapped)).toBe('topic_missing');
    expect(missingTopic(wrapped)).toBe('site.a.b');
    expect(missingTopic(new Error('Unknown topics'))).toBeUndefined();
  });

  it('says what to do, depending on KAFKA_AUTO_CREATE_TOPICS', () => {
    expect(topicMissingProblem('badges', false)).toMatch(/^Kafka topic badges does not exist and KAFKA_AUTO_CREATE_TOPICS is off: create the topic \(or set KAFKA_AUTO_CREATE_TOPICS=true\)/);
    expect(topicMissingProblem('badges', true)).toMatch(/auto\.create\.topics\.enable is off on the broker\): create the topic/);
  });
});
