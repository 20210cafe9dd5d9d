package callback

// MinQueueBound is minQueueBound, for the external tests.
const MinQueueBound = minQueueBound
