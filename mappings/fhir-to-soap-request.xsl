<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical FHIR R4 to the request a clinic would send to the gateway's SOAP API
  (schemas/soap/cergw-clinic.wsdl): what `cergw translate -\-to soap` writes, so that an integration
  engineer can see the SOAP form of an SIU or FHIR message. The reverse of soap-to-fhir.xsl:

    an Appointment booked (or pending, ...)  -> BookAppointmentRequest
    an Appointment cancelled                 -> CancelAppointmentRequest
    a PATCH of an Appointment with a start   -> RescheduleAppointmentRequest
    Slots                                    -> PublishSlotsRequest
    a Schedule                               -> PublishScheduleRequest

  The clinic (Rpwdl) is the one whose namespace (urn:oid:2.16.840.1.113883.3.4424.2.3.1.{RPWDL})
  the resource's identifier is in; the specialty is kod resortowy part VIII. Parameter:
  $soap_version (11 or 12). Field-by-field table: docs/mappings.md.
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:f="http://hl7.org/fhir"
                xmlns:c="urn:cergw:clinic:v1" exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="soap_version" select="'11'"/>

  <xsl:variable name="RPWDL_NS" select="'urn:oid:2.16.840.1.113883.3.4424.2.3.1.'"/>
  <xsl:variable name="OID_PESEL" select="'urn:oid:2.16.840.1.113883.3.4424.1.1.616'"/>
  <xsl:variable name="OID_NPWZ" select="'urn:oid:2.16.840.1.113883.3.4424.1.6.2'"/>
  <xsl:variable name="OID_SPECIALTY" select="'urn:oid:2.16.840.1.113883.3.4424.11.2.4'"/>
  <xsl:variable name="URGENCY" select="'http://cergw.pl/fhir/StructureDefinition/urgency'"/>
  <xsl:variable name="ENV">
    <xsl:choose>
      <xsl:when test="$soap_version = '12'">http://www.w3.org/2003/05/soap-envelope</xsl:when>
      <xsl:otherwise>http://schemas.xmlsoap.org/soap/envelope/</xsl:otherwise>
    </xsl:choose>
  </xsl:variable>

  <xsl:variable name="a" select="(//f:Appointment)[1]"/>
  <xsl:variable name="patch" select="/f:Bundle/f:entry[f:request/f:method/@value = 'PATCH'][f:resource/f:Appointment]"/>
  <!-- the appointment's own identifier: the one in a clinic's namespace, else the first -->
  <xsl:variable name="aid" select="($a/f:identifier[starts-with(f:system/@value, $RPWDL_NS)] | $a/f:identifier)[1]"/>

  <xsl:template match="/">
    <xsl:element name="env:Envelope" namespace="{$ENV}">
      <xsl:element name="env:Body" namespace="{$ENV}">
        <xsl:choose>
          <xsl:when test="$a and ($a/f:status/@value = 'cancelled' or $a/f:status/@value = 'entered-in-error')"><xsl:call-template name="cancel"/></xsl:when>
          <xsl:when test="$a and not(contains(' booked pending proposed arrived checked-in waitlist ', concat(' ', $a/f:status/@value, ' ')))">
            <xsl:message terminate="yes">the clinic SOAP API has no operation for an appointment <xsl:value-of select="$a/f:status/@value"/> (it books, reschedules and cancels)</xsl:message>
          </xsl:when>
          <xsl:when test="$a and $patch"><xsl:call-template name="reschedule"/></xsl:when>
          <xsl:when test="$a"><xsl:call-template name="book"/></xsl:when>
          <xsl:when test="//f:Slot"><xsl:call-template name="slots"/></xsl:when>
          <xsl:when test="//f:Schedule"><xsl:call-template name="schedule"/></xsl:when>
          <xsl:otherwise><xsl:message terminate="yes">no Appointment, Slot or Schedule to express as a SOAP request</xsl:message></xsl:otherwise>
        </xsl:choose>
      </xsl:element>
    </xsl:element>
  </xsl:template>

  <!-- c:Clinic of resource |r|: RPWDL from its identifier's namespace, the specialty code -->
  <xsl:template name="clinic">
    <xsl:param name="r"/>
    <xsl:variable name="sys" select="($r/f:identifier/f:system/@value[starts-with(., $RPWDL_NS)])[1]"/>
    <c:Clinic>
      <c:Rpwdl><xsl:value-of select="substring(substring-after($sys, $RPWDL_NS), 1, 12)"/></c:Rpwdl>
      <c:Specialty><xsl:value-of select="($r/f:specialty/f:coding[f:system/@value = $OID_SPECIALTY]/f:code/@value | //f:specialty/f:coding[f:system/@value = $OID_SPECIALTY]/f:code/@value)[1]"/></c:Specialty>
    </c:Clinic>
  </xsl:template>

  <xsl:template name="visit-kind">
    <xsl:param name="r"/>
    <xsl:variable name="codes" select="$r/f:appointmentType/f:coding/f:code/@value"/>
    <xsl:choose>
      <xsl:when test="$codes = 'followup' or $codes = 'FOLLOWUP' or $codes = 'KONTYNUACJA'">followup</xsl:when>
      <xsl:otherwise>first</xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template name="contact">
    <xsl:param name="t"/>
    <c:Contact>
      <xsl:for-each select="$t[f:system/@value = 'phone'][1]"><c:Phone><xsl:value-of select="f:value/@value"/></c:Phone></xsl:for-each>
      <xsl:for-each select="$t[f:system/@value = 'email'][1]"><c:Email><xsl:value-of select="f:value/@value"/></c:Email></xsl:for-each>
    </c:Contact>
  </xsl:template>

  <xsl:template name="book">
    <xsl:variable name="pt-actor" select="$a/f:participant/f:actor[f:type/@value = 'Patient' or starts-with(f:reference/@value, 'Patient/') or starts-with(f:reference/@value, '#')][1]"/>
    <xsl:variable name="pesel" select="string(($pt-actor/f:identifier[f:system/@value = $OID_PESEL]/f:value/@value)[1])"/>
    <xsl:variable name="patient" select="(//f:Patient[f:identifier[f:system/@value = $OID_PESEL and f:value/@value = $pesel]] | $a/f:contained/f:Patient[concat('#', f:id/@value) = $pt-actor/f:reference/@value])[1]"/>
    <xsl:variable name="pract" select="$a/f:participant/f:actor[f:type/@value = 'Practitioner'][f:identifier/f:system/@value = $OID_NPWZ][1]"/>
    <c:BookAppointmentRequest>
      <xsl:call-template name="clinic"><xsl:with-param name="r" select="$a"/></xsl:call-template>
      <c:AppointmentId><xsl:value-of select="$aid/f:value/@value"/></c:AppointmentId>
      <xsl:for-each select="$a/f:slot[1]"><c:SlotId><xsl:value-of select="concat(f:identifier/f:value/@value, substring-after(f:reference/@value, 'Slot/'))"/></c:SlotId></xsl:for-each>
      <c:Start><xsl:value-of select="$a/f:start/@value"/></c:Start>
      <c:End><xsl:value-of select="$a/f:end/@value"/></c:End>
      <c:VisitKind><xsl:call-template name="visit-kind"><xsl:with-param name="r" select="$a"/></xsl:call-template></c:VisitKind>
      <xsl:for-each select="$a/f:extension[@url = $URGENCY]/f:valueCode"><c:Urgency><xsl:value-of select="@value"/></c:Urgency></xsl:for-each>
      <xsl:for-each select="$a/f:basedOn[f:identifier/f:value/@value][1]"><c:ReferralKey><xsl:value-of select="f:identifier/f:value/@value"/></c:ReferralKey></xsl:for-each>
      <c:Patient>
        <c:Pesel><xsl:value-of select="$pesel"/></c:Pesel>
        <c:GivenName><xsl:value-of select="$patient/f:name[1]/f:given[1]/@value"/></c:GivenName>
        <c:FamilyName><xsl:value-of select="$patient/f:name[1]/f:family/@value"/></c:FamilyName>
        <xsl:if test="$patient/f:telecom"><xsl:call-template name="contact"><xsl:with-param name="t" select="$patient/f:telecom"/></xsl:call-template></xsl:if>
        <xsl:for-each select="$patient/f:contact[f:telecom][1]">
          <c:ContactPerson>
            <c:Name><xsl:value-of select="normalize-space(concat(f:name/f:text/@value, ' ', f:name/f:given[1]/@value, ' ', f:name/f:family/@value))"/></c:Name>
            <xsl:call-template name="contact"><xsl:with-param name="t" select="f:telecom"/></xsl:call-template>
          </c:ContactPerson>
        </xsl:for-each>
      </c:Patient>
      <xsl:for-each select="$pract">
        <c:Practitioner><c:Npwz><xsl:value-of select="f:identifier/f:value/@value"/></c:Npwz>
          <xsl:if test="f:display/@value"><c:Name><xsl:value-of select="f:display/@value"/></c:Name></xsl:if></c:Practitioner>
      </xsl:for-each>
      <xsl:if test="$a/f:comment/@value"><c:Comment><xsl:value-of select="$a/f:comment/@value"/></c:Comment></xsl:if>
    </c:BookAppointmentRequest>
  </xsl:template>

  <xsl:template name="reschedule">
    <c:RescheduleAppointmentRequest>
      <xsl:call-template name="clinic"><xsl:with-param name="r" select="$a"/></xsl:call-template>
      <c:AppointmentId><xsl:value-of select="$aid/f:value/@value"/></c:AppointmentId>
      <xsl:for-each select="$a/f:slot[1]"><c:SlotId><xsl:value-of select="concat(f:identifier/f:value/@value, substring-after(f:reference/@value, 'Slot/'))"/></c:SlotId></xsl:for-each>
      <c:Start><xsl:value-of select="$a/f:start/@value"/></c:Start>
      <c:End><xsl:value-of select="$a/f:end/@value"/></c:End>
    </c:RescheduleAppointmentRequest>
  </xsl:template>

  <xsl:template name="cancel">
    <c:CancelAppointmentRequest>
      <xsl:call-template name="clinic"><xsl:with-param name="r" select="$a"/></xsl:call-template>
      <c:AppointmentId><xsl:value-of select="$aid/f:value/@value"/></c:AppointmentId>
      <xsl:variable name="reason">
        <xsl:choose>
          <xsl:when test="$a/f:status/@value = 'entered-in-error'">entered in error</xsl:when>
          <xsl:otherwise><xsl:value-of select="normalize-space(($a/f:cancelationReason/f:text/@value | $a/f:cancelationReason/f:coding/f:display/@value)[1])"/></xsl:otherwise>
        </xsl:choose>
      </xsl:variable>
      <xsl:if test="$reason != ''"><c:Reason><xsl:value-of select="$reason"/></c:Reason></xsl:if>
    </c:CancelAppointmentRequest>
  </xsl:template>

  <xsl:template name="slots">
    <xsl:variable name="s1" select="(//f:Slot)[1]"/>
    <c:PublishSlotsRequest>
      <xsl:call-template name="clinic"><xsl:with-param name="r" select="$s1"/></xsl:call-template>
      <c:ScheduleId><xsl:value-of select="concat($s1/f:schedule/f:identifier/f:value/@value, substring-after($s1/f:schedule/f:reference/@value, 'Schedule/'))"/></c:ScheduleId>
      <xsl:for-each select="//f:Slot">
        <c:Slot>
          <c:Id><xsl:value-of select="(f:identifier/f:value/@value | f:id/@value)[1]"/></c:Id>
          <c:Start><xsl:value-of select="f:start/@value"/></c:Start>
          <c:End><xsl:value-of select="f:end/@value"/></c:End>
          <c:Status><xsl:value-of select="f:status/@value"/></c:Status>
          <xsl:if test="f:appointmentType"><c:VisitKind><xsl:call-template name="visit-kind"><xsl:with-param name="r" select="."/></xsl:call-template></c:VisitKind></xsl:if>
          <xsl:if test="f:comment/@value"><c:Comment><xsl:value-of select="f:comment/@value"/></c:Comment></xsl:if>
        </c:Slot>
      </xsl:for-each>
    </c:PublishSlotsRequest>
  </xsl:template>

  <xsl:template name="schedule">
    <xsl:variable name="s" select="(//f:Schedule)[1]"/>
    <c:PublishScheduleRequest>
      <xsl:call-template name="clinic"><xsl:with-param name="r" select="$s"/></xsl:call-template>
      <c:ScheduleId><xsl:value-of select="($s/f:identifier/f:value/@value | $s/f:id/@value)[1]"/></c:ScheduleId>
      <xsl:for-each select="$s/f:actor[f:type/@value = 'Practitioner' or f:identifier/f:system/@value = $OID_NPWZ][1]">
        <c:Practitioner><c:Npwz><xsl:value-of select="f:identifier/f:value/@value"/></c:Npwz>
          <xsl:if test="f:display/@value"><c:Name><xsl:value-of select="f:display/@value"/></c:Name></xsl:if></c:Practitioner>
      </xsl:for-each>
      <c:Place><xsl:value-of select="$s/f:actor[f:type/@value = 'Location'][1]/f:display/@value"/></c:Place>
      <c:HorizonStart><xsl:value-of select="$s/f:planningHorizon/f:start/@value"/></c:HorizonStart>
      <c:HorizonEnd><xsl:value-of select="$s/f:planningHorizon/f:end/@value"/></c:HorizonEnd>
      <xsl:if test="$s/f:comment/@value"><c:Comment><xsl:value-of select="$s/f:comment/@value"/></c:Comment></xsl:if>
    </c:PublishScheduleRequest>
  </xsl:template>
</xsl:stylesheet>
