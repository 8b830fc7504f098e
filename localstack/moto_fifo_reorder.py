"""moto 5.2.5 hands out a FIFO group's messages out of order once they come back from a retry.

Two messages A, B of one group are received, both put back (ChangeMessageVisibility), A first.
SQS then delivers A before B; moto delivers B first: its ReceiveMessage works out which groups
are in flight once per call, so A, visible first but in a group B still holds, is skipped, and B
is handed out in the next call ahead of it. Also, concurrent ReceiveMessage calls are not
serialised, so two pollers may get messages of one group at the same time.

Run: .venv/bin/python localstack/moto_fifo_reorder.py   (prints B before A)
"""
import time, boto3
from moto import mock_aws
with mock_aws():
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "60"})["QueueUrl"]
    for body in ["A", "B"]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=body)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    print("first", [m["Body"] for m in got])
    a, b = got
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=a["ReceiptHandle"], VisibilityTimeout=1)
    time.sleep(0.4)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=b["ReceiptHandle"], VisibilityTimeout=1)
    # A becomes visible first: poll like an event source mapping
    order = []
    deadline = time.time() + 5
    while len(order) < 2 and time.time() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            order.append(m["Body"]); sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        time.sleep(0.05)
    print("after visibility changes:", order)
