"""HL7 v2 (ER7) in, FHIR R4 entries out; the ACK back.

Modules: er7 (decoding, MSH, field access), datatypes (date/times, ids,
concepts, numbers), adt, oru, siu and mdm (one per message family),
convert (the whole message), ack (acknowledgements) and results (what they
return). Import from the modules; this package re-exports nothing.
"""
