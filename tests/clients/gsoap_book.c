/* A C client that gSOAP (Debian's gsoap: wsdl2h, soapcpp2) generates from the WSDL the gateway
 * serves, unchanged: it books a visit with BookAppointment over mutual TLS and prints the status.
 * Built and run by tests/integration/delivery.sh; not part of the gateway.
 * Usage: gsoap_book ENDPOINT KEY_AND_CERT_PEM CA_PEM APPOINTMENT_ID SECONDS_AHEAD */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ClinicCallbackSoap11.nsmap"
#include "soapH.h"

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: gsoap_book ENDPOINT KEY_AND_CERT_PEM CA_PEM APPOINTMENT_ID SECONDS_AHEAD\n");
    return 2;
  }
  struct soap *soap = soap_new1(SOAP_C_UTFSTRING);
  soap_ssl_init();
  if (soap_ssl_client_context(soap, SOAP_SSL_DEFAULT, argv[2], NULL, argv[3], NULL, NULL)) {
    soap_print_fault(soap, stderr);
    return 1;
  }
  struct ns1__Clinic clinic = {.Rpwdl = "000000012345", .Specialty = "1100"};
  struct ns1__Contact contact = {.Phone = "+48600100200"};
  struct ns1__Patient patient = {
      .Pesel = "85010112345", .GivenName = "Jan", .FamilyName = "Kowalski", .Contact = &contact};
  struct _ns1__BookAppointmentRequest req = {.Clinic = &clinic,
                                             .AppointmentId = argv[4],
                                             .Start = time(NULL) + atol(argv[5]),
                                             .End = time(NULL) + atol(argv[5]) + 1200,
                                             .VisitKind = ns1__VisitKind__followup,
                                             .Patient = &patient};
  struct ns1__Accepted resp;
  if (soap_call___ns1__BookAppointment(soap, argv[1], NULL, &req, &resp) != SOAP_OK) {
    soap_print_fault(soap, stderr);
    return 1;
  }
  printf("Status %s MessageId %s Deliveries %d\n", resp.Status ? resp.Status : "-",
         resp.MessageId ? resp.MessageId : "-", resp.__sizeDelivery);
  soap_destroy(soap);
  soap_end(soap);
  soap_free(soap);
  return 0;
}
