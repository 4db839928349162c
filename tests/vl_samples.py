"""Hand-written, realistic VL records of every shape, shared by the VL tests."""

PNG_DATA_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

LLAVA = {
    "id": "000000033471",
    "image": "coco/train2017/000000033471.jpg",
    "conversations": [
        {
            "from": "system",
            "value": "You are a careful visual assistant. Look at the image and answer the question. "
            "Answer with a single word or phrase.",
        },
        {
            "from": "human",
            "value": "<image>\nLook at the image and answer the question. What are the colors of the bus in the image?\n"
            "Answer with a single word or phrase.",
        },
        {"from": "gpt", "value": "White and red. Look at the image and answer the question."},
        {
            "from": "human",
            "value": "What feature can be seen on the back of the bus?\nAnswer with a single word or phrase.",
        },
        {"from": "gpt", "value": "Advertisement"},
    ],
    "caption": "Look at the image and answer the question. A white and red double-decker bus drives down a city street.",
    "ocr": "CITY TOUR 24\nAnswer with a single word or phrase.",
    "metadata": {
        "source": "vqav2",
        "template": "Look at the image and answer the question. {question}\nAnswer with a single word or phrase.",
        "width": 640,
    },
}

MESSAGES_PARTS = {
    "messages": [
        {"role": "system", "content": "Read the chart carefully and answer in one sentence."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                {"type": "text", "text": "Read the chart carefully and answer in one sentence.\n"
                 "Which quarter had the highest revenue?"},
            ],
        },
        {"role": "assistant", "content": "The fourth quarter had the highest revenue."},
    ],
    "caption": "Bar chart of quarterly revenue for 2023. Read the chart carefully and answer in one sentence.",
}

SHAREGPT_STRING = {
    "id": "sharegpt4v-0091",
    "images": ["sa_1234.jpg"],
    "messages": [
        {"role": "user", "content": "<image>Describe this image in detail, including the objects and their layout."},
        {"role": "assistant", "content": "A wooden desk holds a laptop, a mug and a stack of books."},
    ],
    "metadata": "prompt: Describe this image in detail, including the objects and their layout.",
    "ocr": "",
}

FLAT = {
    "image": "https://example.com/docvqa/page-0042.png",
    "system": "You answer questions about scanned documents.\nGive the exact value as printed on the page.",
    "user": "What is the invoice total?\nGive the exact value as printed on the page.",
    "caption": "A scanned invoice from ACME Corp with a table of line items.",
    "ocr": "INVOICE 2231\nTotal due: $1,204.50\nGive the exact value as printed on the page.",
    "answer": "Give the exact value as printed on the page. $1,204.50",
}
